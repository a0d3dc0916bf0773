#!/usr/bin/python3
"""Shrinks a scenario on which our runner differs from TaskFlow to a smallest one that still differs.

Usage (Debian's /usr/bin/python3, python3-taskflow; build the runner first:
`dotnet build -c Release test/TaskFlow.Conformance`):
    minimise.py FILE [--mode plain|memory|directory|sqlite|distributed-memory|distributed-rabbitmq]
                [--out FILE] [--any-difference] [--budget SECONDS] [--runs 20] [--screen-runs 3]
                [--repeat N]

FILE is a format-1 scenario with its "expect". The minimiser runs our runner (TaskFlow.Conformance
--stdin, one process for all candidates) on it in the chosen mode, then repeatedly tries smaller
candidates -- a child removed, a subflow replaced by its children or made the root, a retry, link,
store entry, parameter, rebind, inject, optional parameter or provides removed, a behaviour made
plainer (fail_times -> its then, fail_if -> its else, a computed value -> a constant, a revert
behaviour dropped), a graph or unordered flow made linear, the parallel engine made serial, a retry
made plainer -- and keeps the first candidate on which the difference persists: the oracle (the real
TaskFlow) writes the candidate's expectation (--screen-runs runs to screen it, --runs runs, default
20, plus slow runs under the parallel engine as scenariogen.py does, before it is kept; an unstable or
malformed candidate is never kept), our runner runs it, and
the first difference must be in the same field as the original's (`atoms`, `trace`, `outcome`, ...;
--any-difference accepts any). A difference that our runner shows only now and then (timing) needs
--repeat N: a candidate then counts as differing when any of N runs differs. It stops when no candidate is kept (or after --budget seconds) and
writes the smallest scenario, with its expectation, to --out (default: FILE's name + ".min.json" in
the current folder), then prints its size, its first difference and which known difference (SPEC
N18, N19) its shape has.
"""

import argparse
import copy
import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import oracle  # noqa: E402
import scenariogen  # noqa: E402

DEFAULT_DLL = os.path.normpath(os.path.join(HERE, '..', 'bin', 'Release', 'net10.0', 'TaskFlow.Conformance.dll'))
MODES = {
    'plain': [],
    'memory': ['--persist', 'memory'],
    'directory': ['--persist', 'directory'],
    'sqlite': ['--persist', 'sqlite'],
    'distributed-memory': ['--engine', 'distributed-memory'],
    'distributed-rabbitmq': ['--engine', 'distributed-rabbitmq'],
}
RUNNER_TIMEOUT_S = 120


class Runner(object):
    """Our conformance runner in --stdin mode: one process, one answer line per scenario path."""

    def __init__(self, mode='plain', dll=None):
        self.mode = mode
        self.dll = dll or os.environ.get('TASKFLOW_CONFORMANCE_DLL') or DEFAULT_DLL
        if not os.path.exists(self.dll):
            raise SystemExit('error: %s not found; build it: dotnet build -c Release test/TaskFlow.Conformance'
                             % self.dll)
        if mode not in MODES:
            raise SystemExit('error: unknown mode %r (%s)' % (mode, ', '.join(sorted(MODES))))
        self.proc = None

    def _start(self):
        self.proc = subprocess.Popen(['dotnet', self.dll, '--stdin'] + MODES[self.mode],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)

    def run(self, path):
        """(passed, first difference or None) of our runner on the scenario file PATH."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.proc.stdin.write(os.path.abspath(path) + '\n')
        self.proc.stdin.flush()
        if not self.sel.select(RUNNER_TIMEOUT_S):
            self.close()
            return False, 'runner error: no answer within %d s' % RUNNER_TIMEOUT_S
        line = self.proc.stdout.readline()
        if not line:
            self.close()
            return False, 'runner error: the runner process ended'
        line = line.rstrip('\n')
        if line.startswith('PASS '):
            return True, None
        _, _, rest = line.partition(' ')
        _, _, diff = rest.partition(': ')
        return False, diff

    def close(self):
        if self.proc is not None:
            try:
                self.proc.stdin.close()
            except Exception:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def difference_field(diff):
    """'trace[t2]: expected ...' -> 'trace'; 'outcome: ...' -> 'outcome'."""
    head = diff.split(':', 1)[0]
    return head.split('[', 1)[0].strip()


# ---------------------------------------------------------------------- scenario edits
def _nodes(node, path=()):
    yield path, node
    if node['kind'] != 'task':
        for i, c in enumerate(node.get('children', [])):
            for x in _nodes(c, path + (i,)):
                yield x


def _at(root, path):
    node = root
    for i in path:
        node = node['children'][i]
    return node


def _names(root):
    out = set()
    for _, n in _nodes(root):
        out.add(n['name'])
        if n.get('retry'):
            out.add(n['retry']['name'])
    return out


def _params(task):
    return list(task.get('requires') or []) + list(task.get('optional') or {})


def _fix_behaviour(beh, params):
    """BEH with references to parameters not in PARAMS replaced (the candidate stays well-formed)."""
    if 'return_arg' in beh and beh['return_arg'] not in params:
        return {'return': 0}
    if 'sum' in beh:
        kept = [p for p in beh['sum'] if p in params]
        return {'sum': kept} if kept else {'return': 0}
    if 'collect' in beh:
        return {'collect': [p for p in beh['collect'] if p in params]} if any(
            p in params for p in beh['collect']) else {'return': []}
    if 'fail_times' in beh:
        return dict(beh, then=_fix_behaviour(beh['then'], params))
    if 'fail_if' in beh:
        if beh['fail_if']['arg'] not in params:
            return _fix_behaviour(beh['else'], params)
        return dict(beh, **{'else': _fix_behaviour(beh['else'], params)})
    return beh


def _renamed(beh, mapping):
    """BEH with its parameter references renamed by MAPPING."""
    beh = copy.deepcopy(beh)
    if 'return_arg' in beh:
        beh['return_arg'] = mapping.get(beh['return_arg'], beh['return_arg'])
    for key in ('sum', 'collect'):
        if key in beh:
            beh[key] = [mapping.get(p, p) for p in beh[key]]
    if 'fail_if' in beh:
        beh['fail_if']['arg'] = mapping.get(beh['fail_if']['arg'], beh['fail_if']['arg'])
        beh['else'] = _renamed(beh['else'], mapping)
    if 'fail_times' in beh:
        beh['then'] = _renamed(beh['then'], mapping)
    return beh


def _whole_behaviour(beh):
    """BEH with a list- or object-building leaf made a plain constant (provides became one name)."""
    if 'fail_times' in beh:
        return dict(beh, then=_whole_behaviour(beh['then']))
    if 'fail_if' in beh:
        return dict(beh, **{'else': _whole_behaviour(beh['else'])})
    if 'collect' in beh or ('return' in beh and isinstance(beh['return'], (list, dict))):
        return {'return': 0}
    return beh


def tidy(scenario):
    """Drops what an edit left dangling: links naming nodes that no longer exist (or on non-graph
    flows), behaviour references to removed parameters, empty optional/inject/rebind objects."""
    root = scenario['flow']
    names = _names(root)
    for _, n in _nodes(root):
        if n['kind'] == 'task':
            params = _params(n)
            n['execute'] = _fix_behaviour(n['execute'], params)
            if 'revert' in n:
                n['revert'] = _fix_behaviour(n['revert'], params)
            for key in ('optional', 'inject', 'rebind', 'requires'):
                if key in n and not n[key]:
                    del n[key]
        else:
            if 'links' in n:
                n['links'] = [l for l in n['links'] if n['kind'] == 'graph' and l[0] in names and l[1] in names]
                if not n['links']:
                    del n['links']
    return scenario


def _simpler_behaviours(beh, shape):
    """Plainer replacements of a behaviour (SHAPE: 'list'/'keys'/other, what provides expects)."""
    out = []
    if 'fail_times' in beh:
        out += [beh['then'], {'fail': beh['message']}]
        if beh['fail_times'] > 1:
            out.append(dict(beh, fail_times=1))
        out += [dict(beh, then=b) for b in _simpler_behaviours(beh['then'], shape)]
    elif 'fail_if' in beh:
        out += [beh['else'], {'fail': beh['message']}]
        if len(beh['fail_if']['in']) > 1:
            for i in range(len(beh['fail_if']['in'])):
                vals = beh['fail_if']['in'][:i] + beh['fail_if']['in'][i + 1:]
                out.append(dict(beh, fail_if={'arg': beh['fail_if']['arg'], 'in': vals}))
        out += [dict(beh, **{'else': b}) for b in _simpler_behaviours(beh['else'], shape)]
    elif 'sum' in beh or 'collect' in beh or 'return_arg' in beh:
        if shape == 'list':
            n = len(beh.get('collect', [])) or 1
            out.append({'return': [0] * n})
        elif shape != 'keys':
            out.append({'return': 0})
        if 'sum' in beh and len(beh['sum']) > 1:
            out.append({'sum': beh['sum'][:1]})
    elif 'return' in beh:
        v = beh['return']
        if isinstance(v, list) and v and shape != 'list':
            out.append({'return': []})
        if isinstance(v, dict) and v and shape != 'keys':
            out.append({'return': {}})
        if v not in (0, None, [], {}) and not isinstance(v, (list, dict)):
            out.append({'return': 0})
    return out


def candidates(scenario):
    """Smaller variants of SCENARIO, roughly the biggest cuts first."""
    root = scenario['flow']
    nodes = list(_nodes(root))

    def variant(edit):
        s = copy.deepcopy(scenario)
        if edit(s) is False:
            return None
        return tidy(s)

    out = []
    # Whole children (subflows first, bigger first), then hoisting a subflow's children, the root.
    removable = sorted((p for p, n in nodes if p), key=lambda p: -len(json.dumps(_at(root, p))))
    for path in removable:
        def rm(s, path=path):
            del _at(s['flow'], path[:-1])['children'][path[-1]]
        out.append(rm)
    for path, n in nodes:
        if n['kind'] != 'task' and path == () and any(c['kind'] != 'task' for c in n['children']):
            for i, c in enumerate(n['children']):
                if c['kind'] != 'task':
                    def reroot(s, i=i):
                        s['flow'] = s['flow']['children'][i]
                    out.append(reroot)
        if n['kind'] != 'task' and path:
            def hoist(s, path=path):
                parent = _at(s['flow'], path[:-1])
                sub = parent['children'][path[-1]]
                parent['children'][path[-1]:path[-1] + 1] = sub['children']
                if parent['kind'] == 'graph' and sub.get('links'):
                    parent['links'] = (parent.get('links') or []) + sub['links']
            out.append(hoist)
    # Flow-level simplifications.
    for path, n in nodes:
        if n['kind'] == 'task':
            continue
        if n.get('retry'):
            def rm_retry(s, path=path):
                del _at(s['flow'], path)['retry']
            out.append(rm_retry)
        for i in range(len(n.get('links') or [])):
            def rm_link(s, path=path, i=i):
                del _at(s['flow'], path)['links'][i]
            out.append(rm_link)
        if n['kind'] != 'linear':
            def make_linear(s, path=path):
                f = _at(s['flow'], path)
                f['kind'] = 'linear'
                f.pop('links', None)
            out.append(make_linear)
    if scenario.get('engine') == 'parallel':
        def serial(s):
            s['engine'] = 'serial'
        out.append(serial)
    for key in list(scenario.get('store') or {}):
        def rm_store(s, key=key):
            del s['store'][key]
        out.append(rm_store)
    # Retries made plainer.
    for path, n in nodes:
        r = n.get('retry') if n['kind'] != 'task' else None
        if not r:
            continue
        for key in ('revert_all', 'provides', 'values_from'):
            if key in r:
                def rm_key(s, path=path, key=key):
                    del _at(s['flow'], path)['retry'][key]
                out.append(rm_key)
        if r['kind'] == 'times' and r.get('attempts', 0) > 1:
            def fewer(s, path=path):
                _at(s['flow'], path)['retry']['attempts'] -= 1
            out.append(fewer)
        if r['kind'] == 'for_each':
            for i in range(len(r['values'])):
                def rm_value(s, path=path, i=i):
                    del _at(s['flow'], path)['retry']['values'][i]
                out.append(rm_value)
        if r['kind'] == 'always_revert_all':
            def plainer(s, path=path):
                _at(s['flow'], path)['retry']['kind'] = 'always_revert'
            out.append(plainer)
    for key, value in (scenario.get('store') or {}).items():
        if isinstance(value, list) and value:
            for i in range(len(value)):
                def rm_elem(s, key=key, i=i):
                    del s['store'][key][i]
                out.append(rm_elem)
    # Tasks: arguments, provides, behaviours.
    for path, n in nodes:
        if n['kind'] != 'task':
            continue
        for key in ('revert', 'inject', 'rebind', 'provides'):
            if key in n:
                def rm_key(s, path=path, key=key):
                    del _at(s['flow'], path)[key]
                out.append(rm_key)
        for i in range(len(n.get('requires') or [])):
            def rm_req(s, path=path, i=i):
                t = _at(s['flow'], path)
                name = t['requires'].pop(i)
                reb = t.get('rebind')
                if isinstance(reb, list) and i < len(reb):
                    del reb[i]
                elif isinstance(reb, dict):
                    reb.pop(name, None)
            out.append(rm_req)
        for name in list(n.get('optional') or {}):
            def rm_opt(s, path=path, name=name):
                t = _at(s['flow'], path)
                del t['optional'][name]
                if isinstance(t.get('rebind'), dict):
                    t['rebind'].pop(name, None)
            out.append(rm_opt)
        if isinstance(n.get('rebind'), dict):
            for name in list(n['rebind']):
                def rm_rebind(s, path=path, name=name):
                    del _at(s['flow'], path)['rebind'][name]
                out.append(rm_rebind)
        if isinstance(n.get('rebind'), list) and len(n['rebind']) > 1:
            def shorter(s, path=path):
                _at(s['flow'], path)['rebind'].pop()
            out.append(shorter)
        if n.get('rebind'):
            def inline(s, path=path):
                # The parameters renamed to the symbols they read, the rebind dropped.
                t = _at(s['flow'], path)
                reb = t.pop('rebind')
                reqs = list(t.get('requires') or [])
                opt = dict(t.get('optional') or {})
                if isinstance(reb, list):
                    if len(reb) > len(reqs):
                        return False
                    mapping = dict(zip(reqs, reb))
                else:
                    if any(k not in reqs and k not in opt for k in reb):
                        return False
                    mapping = dict(reb)
                new_reqs = [mapping.get(p, p) for p in reqs] + [mapping[p] for p in opt if p in mapping]
                new_opt = dict((p, v) for p, v in opt.items() if p not in mapping)
                params = new_reqs + list(new_opt)
                if len(set(params)) != len(params) or any(p in oracle.RESERVED_PARAMS for p in params):
                    return False
                t['requires'] = new_reqs
                if new_opt:
                    t['optional'] = new_opt
                else:
                    t.pop('optional', None)
                for where in ('execute', 'revert'):
                    if where in t:
                        t[where] = _renamed(t[where], mapping)
            out.append(inline)
        if isinstance(n.get('provides'), (list, dict)):
            def whole(s, path=path):
                t = _at(s['flow'], path)
                p = t['provides']
                t['provides'] = (p if isinstance(p, list) else p['keys'])[0]
                t['execute'] = _fix_behaviour(_whole_behaviour(t['execute']), _params(t))
            out.append(whole)
            names = n['provides'] if isinstance(n['provides'], list) else n['provides']['keys']
            if len(names) > 1:
                for i in range(len(names)):
                    def rm_name(s, path=path, i=i):
                        p = _at(s['flow'], path)['provides']
                        del (p if isinstance(p, list) else p['keys'])[i]
                    out.append(rm_name)
        shape = 'list' if isinstance(n.get('provides'), list) else (
            'keys' if isinstance(n.get('provides'), dict) else 'whole')
        for where in ('execute', 'revert'):
            if where in n:
                for b in _simpler_behaviours(n[where], shape if where == 'execute' else 'whole'):
                    def simpler(s, path=path, where=where, b=b):
                        _at(s['flow'], path)[where] = copy.deepcopy(b)
                    out.append(simpler)
    for edit in out:
        v = variant(edit)
        if v is not None:
            yield v


def size(scenario):
    nodes = list(_nodes(scenario['flow']))
    atoms = sum(1 for _, n in nodes if n['kind'] == 'task') + sum(1 for _, n in nodes if n.get('retry'))
    flows = sum(1 for _, n in nodes if n['kind'] != 'task')
    body = dict((k, v) for k, v in scenario.items() if k in ('engine', 'store', 'flow'))
    return atoms, flows, len(json.dumps(body, separators=(',', ':')))


def cost(scenario):
    """What the search must lower with every step: the JSON length, a graph or unordered flow and
    the parallel engine counting as a little more than their linear/serial counterparts."""
    nodes = list(_nodes(scenario['flow']))
    nonlinear = sum(1 for _, n in nodes if n['kind'] in ('graph', 'unordered'))
    return size(scenario)[2] + 3 * nonlinear + (5 if scenario.get('engine') == 'parallel' else 0)


def size_text(scenario):
    return '%d atoms, %d flows, %d characters' % size(scenario)


# ---------------------------------------------------------------------- known differences
def known_shapes(scenario):
    """Which known differences (SPEC N18, N19) the scenario's shape has: a label, never a filter."""
    shapes = []
    for _, n in _nodes(scenario['flow']):
        if n['kind'] == 'graph':
            kids = n['children']
            for i, c in enumerate(kids):
                own = scenariogen.required_symbols(c) & set(scenariogen.provided_symbols(c))
                if own and any(own & set(scenariogen.provided_symbols(other)) for other in kids[i + 1:]):
                    shapes.append('N18')
                    break
                if own and c['kind'] != 'task':
                    shapes.append('N18')
                    break
    if scenario.get('engine') == 'parallel' and any(n.get('retry') for _, n in _nodes(scenario['flow'])):
        shapes.append('N19')
    return sorted(set(shapes))


# ---------------------------------------------------------------------- the search
class Minimiser(object):
    def __init__(self, runner, runs=20, screen_runs=3, any_difference=False, budget=None, log=None,
                 repeat=1):
        self.runner = runner
        self.repeat = repeat
        self.runs = runs
        self.screen_runs = screen_runs
        self.any_difference = any_difference
        self.budget = budget
        self.log = log or (lambda text: None)
        self.tmp = tempfile.mkdtemp(prefix='taskflow-minimise-')
        self.seen = set()
        self.tried = 0

    def _expect(self, scenario, runs):
        seed = zlib.crc32(json.dumps(scenario['flow'], sort_keys=True).encode('ascii'))
        try:
            if runs == self.runs:
                expect, problems = scenariogen.observe_stable(scenario, runs, seed)
            else:
                expect, problems = oracle.observe_scenario(scenario, runs, seed)
        except Exception:       # a candidate TaskFlow cannot build as a scenario: not kept
            return None
        return None if problems else expect

    def check(self, scenario, expect):
        """Our runner's first difference on SCENARIO with EXPECT, or None when it passes (all
        --repeat times: a difference that shows only now and then is still one)."""
        path = os.path.join(self.tmp, scenario['name'] + '.json')
        oracle.write_scenario(path, oracle.ordered_scenario(scenario, expect))
        for _ in range(self.repeat):
            passed, diff = self.runner.run(path)
            if not passed:
                return diff
        return None

    def interesting(self, candidate, field):
        key = json.dumps(candidate, sort_keys=True)
        if key in self.seen:
            return None
        self.seen.add(key)
        self.tried += 1
        # Screened with a few oracle runs first; only a candidate that still differs pays for all of them.
        for runs in sorted(set([min(self.screen_runs, self.runs), self.runs])):
            expect = self._expect(candidate, runs)
            if expect is None:
                return None
            diff = self.check(candidate, expect)
            if diff is None or (not self.any_difference and difference_field(diff) != field):
                return None
        return expect, diff

    def minimise(self, scenario, expect):
        """(smallest scenario, its expectation, its first difference); None if SCENARIO passes."""
        scenario = dict((k, v) for k, v in scenario.items() if k != 'expect')
        diff = self.check(scenario, expect)
        if diff is None:
            return None
        field = difference_field(diff)
        started = time.time()
        best = (scenario, expect, diff)
        improved = True
        while improved:
            improved = False
            for cand in candidates(best[0]):
                if self.budget is not None and time.time() - started > self.budget:
                    self.log('budget of %d s used up' % self.budget)
                    return best
                if cost(cand) >= cost(best[0]):
                    continue
                found = self.interesting(cand, field)
                if found:
                    best = (cand, found[0], found[1])
                    self.log('  kept: %s' % size_text(cand))
                    improved = True
                    break
        return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('file')
    parser.add_argument('--mode', default='plain', choices=sorted(MODES))
    parser.add_argument('--out')
    parser.add_argument('--runs', type=int, default=20)
    parser.add_argument('--screen-runs', type=int, default=3)
    parser.add_argument('--any-difference', action='store_true')
    parser.add_argument('--budget', type=float)
    parser.add_argument('--repeat', type=int, default=1,
                        help='run our runner up to N times per candidate (for a difference that is flaky)')
    parser.add_argument('--dll')
    parser.add_argument('--quiet', action='store_true')
    opts = parser.parse_args(argv)
    with open(opts.file) as fh:
        scenario = json.load(fh)
    runner = Runner(opts.mode, opts.dll)
    started = time.time()
    try:
        m = Minimiser(runner, opts.runs, opts.screen_runs, opts.any_difference, opts.budget,
                      log=None if opts.quiet else (lambda t: print(t, flush=True)), repeat=opts.repeat)
        if 'expect' not in scenario:
            raise SystemExit('error: %s has no "expect" (run oracle.py generate on it first)' % opts.file)
        result = m.minimise(scenario, scenario['expect'])
    finally:
        runner.close()
    if result is None:
        print('%s passes in mode %s: nothing to minimise' % (scenario['name'], opts.mode))
        return 1
    small, expect, diff = result
    out = opts.out or os.path.basename(opts.file).rsplit('.json', 1)[0] + '.min.json'
    small = dict(small, description='minimised from %s (mode %s): %s' % (
        scenario['name'], opts.mode, scenario.get('description', '')))
    small['oracle'] = '%s, stable over %d runs' % (oracle.ORACLE_ID, opts.runs)
    oracle.write_scenario(out, oracle.ordered_scenario(small, expect))
    print('minimised %s (mode %s): %s -> %s; %d candidates in %.0f s; written to %s'
          % (scenario['name'], opts.mode, size_text(scenario), size_text(small), m.tried,
             time.time() - started, out))
    print('first difference: %s' % diff)
    shapes = known_shapes(small)
    print('shape: %s' % (', '.join(shapes) + ' (a known difference)' if shapes else 'neither N18 nor N19: new'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
