#!/usr/bin/python3
"""Random format-1 scenarios, drawn from a model of TaskFlow's rules and judged by the real TaskFlow.

Usage (run with Debian's /usr/bin/python3; needs python3-taskflow):
    scenariogen.py draw --seed S --count N --out DIR [--runs 20] [--jobs J]
        draw scenarios S/0 .. S/N-1, let oracle.py run each --runs times, write the stable ones
        (with their "expect") into DIR and print the counts and the feature coverage
    scenariogen.py show --seed S --index I        print one drawn scenario (no oracle)
    scenariogen.py coverage [--seed S --count N | DIR...]
        feature counts of a draw (structure only, no oracle) or of scenario files (with outcomes)

Scenario I of seed S depends on nothing but (S, I): random.Random("S/I") draws it, so a seed
reproduces a batch exactly (which of its scenarios the 20-run stability check drops can differ for
a shape whose outcome depends on thread timing; the drop is counted and the names are printed).
The model (docs/conformance.md, "Random scenarios"):
  * structure: a root flow, children tasks or subflows of all three kinds down to four flow levels;
    graph children are listed in random order (consumers before providers too), some graphs get
    explicit links on top of the inferred ones;
  * data: a small universe of symbols per scenario (integer symbols, and "any" symbols holding
    strings/lists/objects/booleans/null that are never summed), so that providers, consumers,
    shadowing and several holders of one symbol meet; provides as a name, a list or keys; rebind as
    an object or a list; inject; optional parameters; a store that covers most unprovided symbols
    and sometimes shadows an atom's result;
  * behaviours: return/return_arg/sum/collect, wrapped at a per-scenario rate in fail, fail_times
    or fail_if (fail_if on a retry's provided value makes a retry succeed on a later attempt);
    revert behaviours that return or (serial engine only, SPEC N14) fail;
  * retries: every kind on flows at every depth (so retry in retry), attempts 0-3, for_each value
    lists with duplicates or empty, parameterized_for_each from the store ("values" or "opts"),
    revert_all, provides;
  * both engines; and about one scenario in ten made invalid on purpose, each of the six kinds
    (cycle, missing_requirement, duplicate_name, ambiguous_dependency, extra_argument,
    unknown_link_node); more invalid ones arise on their own (an unsatisfied requirement, two
    providers before a graph consumer, links closing a cycle).
"""

import argparse
import collections
import copy
import json
import multiprocessing
import os
import random
import sys
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)


import oracle  # noqa: E402  (imports taskflow)
from taskflow import engines  # noqa: E402
from taskflow import exceptions as tf_exc  # noqa: E402

DEFAULT_RUNS = 20
SLOW_RUNS = int(os.environ.get('SCENARIOGEN_SLOW_RUNS', '8'))      # parallel engine only, see observe_stable
SLOW_JITTER_MS = 25
MAX_DEPTH = 4            # flow levels, the root being level 1
MAX_FLOWS = 7
INT_SYMBOLS = ['a', 'b', 'c', 'd', 'x', 'y', 'z']
ANY_SYMBOLS = ['s', 'u']
PARAM_ONLY = ['k', 'm', 'p', 'q', 'w']          # parameter names that are no symbol of the universe
ANY_VALUES = ['s', 'hi', 'a"b', 'c\\d', [1, 2], [], {'k': 1}, {}, True, False, None]
MESSAGES = ['boom', 'flaky', 'broken', 'no', 'oops']
RETRY_KINDS = ['times', 'for_each', 'parameterized_for_each', 'always_revert', 'always_revert_all']
INVALID_KINDS = ['cycle', 'missing_requirement', 'duplicate_name', 'ambiguous_dependency',
                 'extra_argument', 'unknown_link_node']


def scenario_name(seed, index, area):
    # NNN-AREA-... like the hand-written corpus (ScenarioSubset reads the area after the first '-').
    return 'G%s-%s-%04d' % (seed, area, index)


class _Draw(object):
    """Draws one scenario; every random choice comes from one random.Random seeded by "seed/index"."""

    def __init__(self, seed, index, attempt=0):
        self.seed, self.index = seed, index
        self.rng = random.Random('%s/%s' % (seed, index) + ('/%d' % attempt if attempt else ''))
        self.counts = collections.Counter()
        self.tasks = []        # task nodes, in tree (listing) order
        self.flows = []        # flow nodes, in tree order
        self.parent = {}       # node name -> parent flow node
        self.depth = {}        # flow name -> level (root 1)

    # ------------------------------------------------------------------ small helpers
    def new_name(self, prefix):
        self.counts[prefix] += 1
        return '%s%d' % (prefix, self.counts[prefix])

    def chance(self, p):
        return self.rng.random() < p

    def value_of(self, sym):
        if self.types.get(sym) == 'any':
            return self.rng.choice(ANY_VALUES)
        return self.rng.randint(0, 9)

    def retries_above(self, node):
        """The retries of the flows enclosing NODE, nearest first."""
        out = []
        flow = self.parent.get(node['name'])
        while flow is not None:
            if flow.get('retry') is not None:
                out.append(flow['retry'])
            flow = self.parent.get(flow['name'])
        return out

    # ------------------------------------------------------------------ structure
    def structure(self):
        rng = self.rng
        self.engine = 'parallel' if self.chance(0.4) else 'serial'
        self.deep = self.chance(0.2)
        self.budget = rng.choice([1, 2, 3, 4, 4, 5, 5, 6, 6, 7, 8, 9])
        self.retry_rate = 0.5 if self.chance(0.25) else 0.18
        self.fail_rate = rng.choice([0.0, 0.1, 0.2, 0.3, 0.45])
        ints = rng.sample(INT_SYMBOLS, rng.randint(2, 5))
        anys = rng.sample(ANY_SYMBOLS, rng.choice([0, 0, 1]))
        self.types = dict([(s, 'int') for s in ints] + [(s, 'any') for s in anys])
        self.root = self.flow(1, None)
        for flow in self.flows:
            if self.chance(self.retry_rate):
                flow['retry'] = self.retry()

    def flow(self, level, parent):
        rng = self.rng
        node = {'kind': rng.choice(['linear', 'unordered', 'graph']), 'name': self.new_name('f')}
        self.flows.append(node)
        self.depth[node['name']] = level
        if parent is not None:
            self.parent[node['name']] = parent
        children = []
        count = rng.choice([1, 2, 2, 3, 3, 4]) if not (level > 1 and self.chance(0.04)) else 0
        if level == 1 and self.chance(0.02):
            count = 0
        for _ in range(count):
            sub_p = (0.65 if self.deep else [0.3, 0.25, 0.2][level - 1]) if level < MAX_DEPTH else 0
            if len(self.flows) < MAX_FLOWS and self.chance(sub_p):
                children.append(self.flow(level + 1, node))
            elif self.budget > 0:
                self.budget -= 1
                task = {'kind': 'task', 'name': self.new_name('t')}
                self.tasks.append(task)
                self.parent[task['name']] = node
                children.append(task)
        node['children'] = children
        return node

    def retry(self):
        rng = self.rng
        kind = rng.choice(RETRY_KINDS)
        r = {'kind': kind, 'name': self.new_name('r')}
        if kind == 'times':
            r['attempts'] = rng.choice([0, 1, 2, 2, 3, 3])
        elif kind == 'for_each':
            r['values'] = self.value_list()
        elif kind == 'parameterized_for_each':
            if self.chance(0.3):
                r['values_from'] = 'opts'
        if kind in ('times', 'for_each', 'parameterized_for_each') and self.chance(0.3):
            r['revert_all'] = True
        if self.chance(0.45):
            if kind.startswith('always'):
                anys = sorted(s for s, t in self.types.items() if t == 'any')
                if not anys:
                    self.types['u'] = 'any'
                    anys = ['u']
                r['provides'] = rng.choice(anys)
            else:
                r['provides'] = rng.choice(sorted(s for s, t in self.types.items() if t == 'int'))
        return r

    def value_list(self):
        n = self.rng.choice([0, 1, 1, 2, 2, 2, 3, 3])
        return [self.rng.randint(0, 4) for _ in range(n)]

    # ------------------------------------------------------------------ data
    def provides(self):
        rng = self.rng
        ints = sorted(s for s, t in self.types.items() if t == 'int')
        for task in self.tasks:
            r = rng.random()
            if r < 0.5:
                task['provides'] = rng.choice(sorted(self.types))
                task['_out'] = ('whole', self.types[task['provides']])
            elif r < 0.62 and len(ints) >= 1:
                names = rng.sample(ints, min(len(ints), rng.choice([1, 2, 2, 3])))
                task['provides'] = names
                task['_out'] = ('list', names)
            elif r < 0.72 and len(ints) >= 1:
                names = rng.sample(ints, min(len(ints), rng.choice([1, 2, 2])))
                task['provides'] = {'keys': names}
                task['_out'] = ('keys', names)
            else:
                task['_out'] = ('none', None)

    def provided_by(self, node):
        return provided_symbols(node)

    def requires(self):
        rng = self.rng
        everything = sorted(set(self.provided_by(self.root)))
        universe = sorted(self.types)
        for task in self.tasks:
            parent = self.parent[task['name']]
            retry_syms = [r['provides'] for r in self.retries_above(task) if r.get('provides')]
            siblings = []
            if parent['kind'] == 'graph':
                for c in parent['children']:
                    if c is not task:
                        siblings.extend(self.provided_by(c))
            syms = []
            for _ in range(rng.choice([0, 0, 1, 1, 1, 2, 2, 3])):
                if retry_syms and self.chance(0.4):
                    sym = rng.choice(retry_syms)
                elif siblings and self.chance(0.35):
                    sym = rng.choice(sorted(set(siblings)))
                elif everything and self.chance(0.6):
                    sym = rng.choice(everything)
                else:
                    sym = rng.choice(universe)
                if sym not in syms:
                    syms.append(sym)
            self.arguments(task, syms)

    def arguments(self, task, syms):
        """Parameters, rebind, optional parameters and inject of TASK reading the symbols SYMS."""
        rng = self.rng
        params = list(syms)
        spare = [p for p in PARAM_ONLY]
        rng.shuffle(spare)
        rebind = None
        style = rng.random() if syms else 1.0
        if style < 0.16:
            rebind = {}
            for i, sym in enumerate(syms):
                if i == 0 or self.chance(0.5):
                    params[i] = spare.pop() if self.chance(0.85) else sym
                    rebind[params[i]] = sym
        elif style < 0.28:
            j = rng.randint(1, len(syms))
            for i in range(j):
                if self.chance(0.7):
                    params[i] = spare.pop()
            rebind = list(syms[:j])
        optional = {}
        if self.chance(0.25):
            for _ in range(rng.choice([1, 1, 2])):
                candidates = [s for s in sorted(self.types) if s not in params and s not in optional]
                if candidates and self.chance(0.7):
                    name = rng.choice(candidates)
                else:
                    name = spare.pop()
                optional[name] = self.value_of(name) if name in self.types else rng.randint(0, 9)
                if isinstance(rebind, dict) and self.chance(0.25):
                    # Rebinding an optional parameter makes it required (SPEC N17).
                    rebind[name] = rng.choice(sorted(self.types))
        task['requires'] = params
        if optional:
            task['optional'] = optional
        if rebind is not None:
            task['rebind'] = rebind
        # What each parameter reads, with its type (the behaviours must fit it).
        reads = {}
        for i, p in enumerate(params):
            reads[p] = syms[i]
        for p in optional:
            reads[p] = rebind[p] if isinstance(rebind, dict) and p in rebind else p
        task['_reads'] = reads
        if self.chance(0.12):
            sym = rng.choice(sorted(set(reads.values())) if reads and self.chance(0.8) else sorted(self.types))
            task['inject'] = {sym: self.value_of(sym)}

    def store(self):
        provided = set(self.provided_by(self.root))
        read = set()
        for task in self.tasks:
            read.update(task['_reads'].values())
        store = {}
        for sym in sorted(self.types):
            if sym in provided:
                if self.chance(0.1):
                    store[sym] = self.value_of(sym)      # shadows the atom's result (SPEC N1)
            elif sym in read and self.chance(0.88):
                store[sym] = self.value_of(sym)
            elif self.chance(0.15):
                store[sym] = self.value_of(sym)
        for flow in self.flows:
            r = flow.get('retry')
            if r and r['kind'] == 'parameterized_for_each' and self.chance(0.95):
                store[r.get('values_from', 'values')] = self.value_list()
        self.store_values = store

    def supply(self, missing):
        """Store values for the symbols that the parameters named MISSING read."""
        for name in missing:
            for task in self.tasks:
                sym = task['_reads'].get(name)
                if sym is not None and sym not in self.store_values:
                    self.store_values[sym] = self.value_of(sym) if sym in self.types else self.rng.randint(0, 9)
            for flow in self.flows:
                r = flow.get('retry')
                if name == 'values' and r and r['kind'] == 'parameterized_for_each':
                    self.store_values.setdefault(r.get('values_from', 'values'), self.value_list())

    # ------------------------------------------------------------------ behaviours
    def type_of_param(self, task, p):
        sym = task['_reads'].get(p)
        if sym in self.types:
            return self.types[sym]
        return 'int' if sym in PARAM_ONLY else 'any'

    def likely_values(self, task, p):
        """Values parameter P of TASK may well receive (for fail_if)."""
        sym = task['_reads'][p]
        out = []
        for r in self.retries_above(task):
            if r.get('provides') == sym:
                if r['kind'] == 'times':
                    out.extend([1, 2][:max(1, r['attempts'] - 1)])
                elif r['kind'] == 'for_each' and r['values']:
                    out.extend(r['values'][:max(1, len(r['values']) - 1)])
                elif r['kind'] == 'parameterized_for_each':
                    vals = self.store_values.get(r.get('values_from', 'values')) or []
                    out.extend(vals[:1])
        if sym in self.store_values:
            out.append(self.store_values[sym])
        if p in task.get('optional', {}):
            out.append(task['optional'][p])
        if not out or self.chance(0.3):
            out.append(self.value_of(sym) if sym in self.types else self.rng.randint(0, 9))
        return out

    def base(self, task, out):
        rng = self.rng
        params = list(task['requires']) + list(task.get('optional', {}))
        ints = [p for p in params if self.type_of_param(task, p) == 'int']
        kind, detail = out
        if kind == 'list':
            n = len(detail)
            n = n - 1 if self.chance(0.1) else (n + 1 if self.chance(0.1) else n)
            if ints and self.chance(0.6):
                return {'collect': [rng.choice(ints) for _ in range(n)]}
            return {'return': [rng.randint(0, 20) for _ in range(n)]}
        if kind == 'keys':
            keys = [k for k in detail if not self.chance(0.1)]
            if self.chance(0.1):
                keys.append('extra')
            return {'return': dict((k, rng.randint(0, 20)) for k in keys)}
        want = detail if kind == 'whole' else rng.choice(['int', 'any'])
        options = []
        if want == 'int':
            options.append({'return': rng.randint(0, 20)})
            if ints:
                options.append({'return_arg': rng.choice(ints)})
                options.append({'sum': rng.sample(ints, rng.randint(1, len(ints)))})
        else:
            options.append({'return': rng.choice(ANY_VALUES)})
            anys = [p for p in params if self.type_of_param(task, p) == 'any']
            if anys:
                options.append({'return_arg': rng.choice(anys)})
            if params:
                options.append({'collect': [rng.choice(params) for _ in range(rng.randint(1, 3))]})
        return rng.choice(options)

    def failing(self, task, beh, revert=False):
        rng = self.rng
        params = list(task['requires']) + list(task.get('optional', {}))
        msg = rng.choice(MESSAGES) if not revert else 'revert-' + rng.choice(MESSAGES)
        in_retry = bool(self.retries_above(task))
        r = rng.random()
        if params and r < (0.3 if not in_retry else 0.35):
            p = rng.choice(params)
            for q in params:
                for rr in self.retries_above(task):
                    if rr.get('provides') and task['_reads'][q] == rr['provides']:
                        p = q
            values = self.likely_values(task, p)
            return {'fail_if': {'arg': p, 'in': values[:rng.randint(1, len(values))]},
                    'message': msg, 'else': beh}
        if r < (0.6 if not in_retry else 0.8):
            return {'fail_times': rng.choice([1, 1, 2, 3]), 'message': msg, 'then': beh}
        return {'fail': msg}

    def behaviours(self):
        for task in self.tasks:
            beh = self.base(task, task['_out'])
            if self.chance(self.fail_rate):
                beh = self.failing(task, beh)
            task['execute'] = beh
            r = self.rng.random()
            # Under the parallel engine a failing revert races with its siblings (SPEC N14): never.
            if self.engine == 'serial' and r < 0.12:
                task['revert'] = self.failing(task, {'return': None}, revert=True)
            elif r < 0.25:
                task['revert'] = {'return': self.rng.randint(0, 20)}

    # ------------------------------------------------------------------ graph links
    def links(self):
        rng = self.rng
        for flow in self.flows:
            if flow['kind'] == 'graph' and len(flow['children']) >= 2 and self.chance(0.3):
                names = [c['name'] for c in flow['children']]
                links = []
                for _ in range(rng.choice([1, 1, 2])):
                    u, v = rng.sample(names, 2)
                    if names.index(u) > names.index(v) and self.chance(0.6):
                        u, v = v, u
                    if [u, v] not in links:
                        links.append([u, v])
                flow['links'] = links

    # ------------------------------------------------------------------ invalid on purpose
    def make_invalid(self, kind):
        rng = self.rng
        if kind == 'cycle':
            graphs = [f for f in self.flows if f['kind'] == 'graph' and len(f['children']) >= 2]
            if not graphs:
                flows = [f for f in self.flows if len(f['children']) >= 2]
                if not flows:
                    return False
                graphs = [rng.choice(flows)]
                graphs[0]['kind'] = 'graph'
            g = rng.choice(graphs)
            u, v = rng.sample([c['name'] for c in g['children']], 2)
            g['links'] = (g.get('links') or []) + [[u, v], [v, u]]
            return True
        if kind == 'missing_requirement':
            if not self.tasks:
                return False
            task = rng.choice(self.tasks)
            name = rng.choice([p for p in PARAM_ONLY if p not in task['requires']
                               and p not in task.get('optional', {})])
            task['requires'] = task['requires'] + [name]
            task['_reads'][name] = name
            rebind = task.get('rebind')
            if isinstance(rebind, list) and len(rebind) == len(task['requires']) - 1 and self.chance(0.5):
                missing = rng.choice(['nowhere', 'absent'])
                task['rebind'] = rebind + [missing]      # the missing symbol is a rebound one (N9)
                task['_reads'][name] = missing
            return True
        if kind == 'duplicate_name':
            if len(self.tasks) < 2:
                return False
            a, b = rng.sample(self.tasks, 2)
            old, b['name'] = b['name'], a['name']
            for flow in self.flows:
                flow['links'] = [[a['name'] if n == old else n for n in link] for link in flow.get('links') or []]
            return True
        if kind == 'ambiguous_dependency':
            graphs = [f for f in self.flows if f['kind'] == 'graph']
            if not graphs:
                return False
            g = rng.choice(graphs)
            sym = rng.choice(sorted(s for s, t in self.types.items() if t == 'int'))
            made = []
            for _ in range(2):
                t = {'kind': 'task', 'name': self.new_name('t'), 'requires': [], 'provides': sym,
                     'execute': {'return': rng.randint(0, 9)}, '_reads': {}, '_out': ('whole', 'int')}
                made.append(t)
            c = {'kind': 'task', 'name': self.new_name('t'), 'requires': [sym],
                 'execute': {'return_arg': sym}, '_reads': {sym: sym}, '_out': ('none', None)}
            children = list(g['children'])
            i = rng.randint(0, len(children))
            j = rng.randint(i, len(children))
            children[i:i] = [made[0]]
            children[j + 1:j + 1] = [made[1]]
            children.append(c) if self.chance(0.5) else children.insert(j + 2, c)
            g['children'] = children
            for t in made + [c]:
                self.parent[t['name']] = g
                self.tasks.append(t)
            return True
        if kind == 'extra_argument':
            if not self.tasks:
                return False
            task = rng.choice(self.tasks)
            rebind = task.get('rebind')
            extra = rng.choice([p for p in PARAM_ONLY if p not in task['requires']
                                and p not in task.get('optional', {})])
            if isinstance(rebind, list) or (rebind is None and task['requires'] and self.chance(0.5)):
                base = rebind if isinstance(rebind, list) else list(task['requires'])
                base = base + [task['requires'][i] for i in range(len(base), len(task['requires']))]
                task['rebind'] = base + [extra]
            else:
                task['rebind'] = dict(rebind or {}, **{extra: rng.choice(sorted(self.types))})
            return True
        if kind == 'unknown_link_node':
            graphs = [f for f in self.flows if f['kind'] == 'graph'
                      and any(c['kind'] != 'task' and self.atoms_in(c) for c in f['children'])]
            if not graphs:
                # Make one: a flow with a task child becomes a graph and the task moves into a new subflow.
                flows = [f for f in self.flows if any(c['kind'] == 'task' for c in f['children'])]
                if not flows:
                    return False
                g = rng.choice(flows)
                g['kind'] = 'graph'
                i = rng.choice([i for i, c in enumerate(g['children']) if c['kind'] == 'task'])
                task = g['children'][i]
                sub = {'kind': rng.choice(['linear', 'unordered', 'graph']), 'name': self.new_name('f'),
                       'children': [task]}
                self.flows.append(sub)
                self.parent[sub['name']] = g
                self.parent[task['name']] = sub
                g['children'][i] = sub
                graphs = [g]
            g = rng.choice(graphs)
            sub = rng.choice([c for c in g['children'] if c['kind'] != 'task' and self.atoms_in(c)])
            deep = rng.choice(self.atoms_in(sub))
            other = rng.choice([c['name'] for c in g['children']])
            link = [deep, other] if self.chance(0.5) else [other, deep]
            g['links'] = (g.get('links') or []) + [link]
            return True
        raise ValueError(kind)

    def atoms_in(self, node):
        if node['kind'] == 'task':
            return [node['name']]
        out = []
        for c in node['children']:
            out.extend(self.atoms_in(c))
        return out

    # ------------------------------------------------------------------ the whole scenario
    def scenario(self):
        self.structure()
        self.provides()
        self.requires()
        self.store()
        self.behaviours()
        self.links()
        self.invalid = None
        if self.chance(0.1):
            kinds = list(INVALID_KINDS)
            self.rng.shuffle(kinds)
            for kind in kinds:
                if self.make_invalid(kind):
                    self.invalid = kind
                    break
        flow = _clean(self.root)
        return {
            'format': 1,
            'name': scenario_name(self.seed, self.index, 'random'),
            'area': 'invalid' if self.invalid else _area(flow, self.engine),
            'description': 'random scenario %s of seed %s (scenariogen.py)%s'
                           % (self.index, self.seed,
                              ', made invalid: ' + self.invalid if self.invalid else ''),
            'engine': self.engine,
            'store': self.store_values,
            'flow': flow,
        }


def _clean(node):
    """The JSON node without the generator's private keys, in the usual key order."""
    if node['kind'] == 'task':
        out = {'kind': 'task', 'name': node['name']}
        for key in ('requires', 'optional', 'rebind', 'inject', 'provides', 'execute', 'revert'):
            if key in node and not (key == 'requires' and not node[key]):
                out[key] = node[key]
        return out
    out = {'kind': node['kind'], 'name': node['name']}
    if node.get('retry') is not None:
        out['retry'] = node['retry']
    out['children'] = [_clean(c) for c in node['children']]
    if node.get('links') and node['kind'] == 'graph':
        out['links'] = node['links']
    return out


def provided_symbols(node):
    """Symbols NODE provides, one entry per provider (a subflow: its retry's and all its atoms')."""
    if node['kind'] == 'task':
        p = node.get('provides')
        return [p] if isinstance(p, str) else list(p if isinstance(p, list) else (p or {}).get('keys', []))
    out = [node['retry']['provides']] if node.get('retry') and node['retry'].get('provides') else []
    for c in node['children']:
        out.extend(provided_symbols(c))
    return out


def required_symbols(node):
    """Symbols NODE's atoms read from outside themselves: required parameters after rebinding (a rebound
    optional parameter too), less what each task injects (a subflow: the union over its tasks)."""
    if node['kind'] != 'task':
        out = set()
        for c in node['children']:
            out |= required_symbols(c)
        return out
    reb = node.get('rebind')
    reqs = list(node.get('requires') or [])
    if isinstance(reb, dict):
        syms = [reb.get(p, p) for p in reqs] + [reb[p] for p in node.get('optional', {}) if p in reb]
    elif isinstance(reb, list):
        syms = reb[:len(reqs)] + reqs[len(reb):]
    else:
        syms = reqs
    return set(syms) - set(node.get('inject') or {})


def _walk(node, level=1, retries=0):
    """(node, flow level, number of enclosing retries) for every node, the root first."""
    yield node, level, retries
    if node['kind'] != 'task':
        inner = retries + (1 if node.get('retry') else 0)
        for c in node['children']:
            for x in _walk(c, level + 1, inner):
                yield x


def _area(flow, engine):
    nodes = list(_walk(flow))
    if any(n.get('retry') for n, _, _ in nodes):
        return 'retry'
    if engine == 'parallel':
        return 'parallel'
    if any(n['kind'] == 'task' and 'revert' in n for n, _, _ in nodes):
        return 'revert'
    if max(lvl for n, lvl, _ in nodes if n['kind'] != 'task') >= 3:
        return 'nesting'
    if any(n['kind'] == 'graph' for n, _, _ in nodes):
        return 'graph'
    if any(n['kind'] == 'task' and ('rebind' in n or 'inject' in n or 'optional' in n) for n, _, _ in nodes):
        return 'args'
    return flow['kind']


def precheck(scenario):
    """What TaskFlow says when it builds, compiles and validates SCENARIO (no run): (None, None) when
    valid, else (error kind, the missing parameter names or None)."""
    recorder = oracle.Recorder(scenario['engine'], 0)
    try:
        flow = oracle.build(scenario['flow'], recorder, {})
        engine = engines.load(flow, store=copy.deepcopy(scenario['store']), engine=scenario['engine'])
        engine.compile()
        engine.prepare()
        engine.validate()
    except oracle.OracleError:
        return None, None           # judge() reports it
    except tf_exc.MissingDependencies as e:
        return 'missing_requirement', sorted(getattr(e, 'missing_requirements', []) or [])
    except Exception as e:
        return oracle._invalid_kind(e, None), None
    return None, None


def draw(seed, index):
    """Scenario INDEX of seed SEED (no expectation).

    A scenario drawn valid that TaskFlow finds invalid by accident (a requirement nobody visible
    provides, links or inferred edges that close a cycle) is common with random data flow, so the
    draw steers towards runnable scenarios: a missing requirement is, mostly, given a store value
    (TaskFlow's validation names the parameters; repeated up to 3 times); a scenario still invalid is
    kept one time in four and otherwise drawn again from "seed/index/attempt".  Each step is itself
    seeded, so (seed, index) still decides the scenario."""
    for attempt in range(10):
        d = _Draw(seed, index, attempt)
        scenario = d.scenario()
        if d.invalid:
            return scenario
        kind, missing = precheck(scenario)
        for _ in range(3):
            if kind != 'missing_requirement' or not d.chance(0.85):
                break
            d.supply(missing)
            kind, missing = precheck(scenario)
        if kind is None or d.chance(0.25):
            return scenario
    return scenario


def observe_stable(scenario, runs, base_seed):
    """(expect, problems) like oracle.observe_scenario, plus, under the parallel engine, SLOW_RUNS
    more runs with task bodies sleeping up to SLOW_JITTER_MS (oracle.py's default is 4 ms): some
    parallel shapes are timing-dependent in TaskFlow yet look stable over 20 quick runs (an atom
    whose arguments cannot be fetched ends the run while another branch is still to be started)."""
    expect, problems = oracle.observe_scenario(scenario, runs, base_seed)
    if problems or scenario.get('engine') != 'parallel' or SLOW_RUNS <= 0:
        return expect, problems
    saved = oracle.JITTER_S
    oracle.JITTER_S = SLOW_JITTER_MS / 1000.0
    try:
        slow, problems = oracle.observe_scenario(scenario, SLOW_RUNS, base_seed + 1)
    finally:
        oracle.JITTER_S = saved
    if problems:
        return expect, ['with %d ms jitter: %s' % (SLOW_JITTER_MS, problems[0])]
    other = dict(slow, trace_order=expect['trace_order']) if expect['outcome'] != 'invalid' else slow
    d = oracle.diff(expect, other)
    if d:
        return expect, ['quick runs vs runs with %d ms jitter: %s' % (SLOW_JITTER_MS, '; '.join(d))]
    return expect, []


def judge(scenario, runs, seed, index):
    """(expect or None, status, detail): status is 'stable', 'unstable' or 'error'."""
    base_seed = zlib.crc32(('%s/%s' % (seed, index)).encode('ascii'))
    try:
        expect, problems = observe_stable(scenario, runs, base_seed)
    except Exception as e:      # an OracleError here is a bug of the generator: report it
        return None, 'error', '%s: %s' % (type(e).__name__, e)
    if problems:
        return None, 'unstable', problems[0]
    return expect, 'stable', None


def finish(scenario, expect, runs):
    """The scenario as written: its final name and area, the oracle line and the expectation."""
    s = dict(scenario)
    if expect['outcome'] == 'invalid':
        s['area'] = 'invalid'
    seed_index = s['name'].split('-')
    s['name'] = '%s-%s-%s' % (seed_index[0], s['area'], seed_index[-1])
    s['oracle'] = '%s, stable over %d runs' % (oracle.ORACLE_ID, runs)
    return oracle.ordered_scenario(s, expect)


def _judge_one(args):
    seed, index, runs = args
    scenario = draw(seed, index)
    started = time.time()
    expect, status, detail = judge(scenario, runs, seed, index)
    out = finish(scenario, expect, runs) if expect is not None else scenario
    return index, out, status, detail, time.time() - started


def draw_batch(seed, count, runs=DEFAULT_RUNS, jobs=None, first=0):
    """Draws and judges scenarios FIRST .. FIRST+COUNT-1 of SEED on JOBS processes.
    Returns a list of (index, scenario, status, detail, seconds) in index order."""
    jobs = jobs or os.cpu_count() or 1
    work = [(seed, i, runs) for i in range(first, first + count)]
    if jobs == 1:
        return [_judge_one(w) for w in work]
    with multiprocessing.Pool(jobs) as pool:
        return sorted(pool.imap_unordered(_judge_one, work, chunksize=1), key=lambda r: r[0])


# ---------------------------------------------------------------------- coverage
def features(scenario):
    """The features a scenario exercises (its structure, and its expectation when it has one)."""
    f = collections.Counter()
    f['engine %s' % scenario.get('engine', 'serial')] += 1
    nodes = list(_walk(scenario['flow']))
    f['max flow depth %d' % max(lvl for n, lvl, _ in nodes if n['kind'] != 'task')] += 1
    symbols = collections.Counter()
    store = scenario.get('store') or {}

    for node, level, retries in nodes:
        if node['kind'] == 'task':
            p = node.get('provides')
            if isinstance(p, str):
                f['provides a name'] += 1
            elif isinstance(p, list):
                f['provides a list'] += 1
            elif isinstance(p, dict):
                f['provides keys'] += 1
            for sym in provided_symbols(node):
                symbols[sym] += 1
            if isinstance(node.get('rebind'), dict):
                f['rebind object'] += 1
                if any(k in node.get('optional', {}) for k in node['rebind']):
                    f['rebind of an optional parameter'] += 1
            elif isinstance(node.get('rebind'), list):
                f['rebind list'] += 1
            if node.get('inject'):
                f['inject'] += 1
            if node.get('optional'):
                f['optional parameter'] += 1
            for where in ('execute', 'revert'):
                beh = node.get(where)
                while isinstance(beh, dict):
                    for key in ('fail', 'fail_times', 'fail_if'):
                        if key in beh:
                            f['%s %s' % (where, key)] += 1
                    beh = beh.get('then') or beh.get('else')
            continue
        f['%s flow at level %d' % (node['kind'], level)] += 1
        if node.get('retry'):
            r = node['retry']
            f['retry %s at level %d' % (r['kind'], level)] += 1
            if retries:
                f['retry in retry'] += 1
            if r.get('revert_all'):
                f['retry revert_all'] += 1
            if r.get('provides'):
                f['retry provides'] += 1
                symbols[r['provides']] += 1
        if node['kind'] == 'graph':
            children = node['children']
            if node.get('links'):
                f['graph explicit link'] += len(node['links'])
            inferred = before = False
            for i, c in enumerate(children):
                for j, other in enumerate(children):
                    if i != j and required_symbols(c) & set(provided_symbols(other)):
                        inferred = True
                        if j > i:
                            before = True
            if inferred:
                f['graph with inferred links'] += 1
            if before:
                f['graph child listed before its provider'] += 1
    for sym, n in symbols.items():
        if n >= 2:
            f['symbol with several atom providers (shadowing)'] += 1
        if sym in store:
            f['store shadows an atom result'] += 1
    expect = scenario.get('expect')
    if expect:
        f['outcome %s' % expect['outcome']] += 1
        if expect['outcome'] == 'invalid':
            f['invalid: %s' % expect['error_kind']] += 1
        else:
            f['trace order %s' % expect['trace_order']] += 1
    return f


def print_coverage(counter, scenarios, out=sys.stdout):
    out.write('feature coverage over %d scenarios (occurrences; "level" = flow nesting level, root 1):\n'
              % scenarios)
    for key in sorted(counter):
        out.write('  %-52s %6d\n' % (key, counter[key]))


# ---------------------------------------------------------------------- command line
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser('draw')
    p.add_argument('--seed', required=True)
    p.add_argument('--count', type=int, default=50)
    p.add_argument('--first', type=int, default=0)
    p.add_argument('--out', required=True)
    p.add_argument('--runs', type=int, default=DEFAULT_RUNS)
    p.add_argument('--jobs', type=int, default=os.cpu_count() or 1)
    p = sub.add_parser('show')
    p.add_argument('--seed', required=True)
    p.add_argument('--index', type=int, required=True)
    p = sub.add_parser('coverage')
    p.add_argument('--seed')
    p.add_argument('--count', type=int, default=1000)
    p.add_argument('targets', nargs='*')
    opts = parser.parse_args(argv)
    if opts.command == 'show':
        print(oracle.pretty(draw(opts.seed, opts.index)))
        return 0
    if opts.command == 'coverage':
        total = collections.Counter()
        if opts.targets:
            files = oracle.collect(opts.targets)
            for path in files:
                with open(path) as fh:
                    total.update(features(json.load(fh)))
            print_coverage(total, len(files))
        else:
            for i in range(opts.count):
                total.update(features(draw(opts.seed, i)))
            print_coverage(total, opts.count)
        return 0
    return draw_command(opts)


def draw_command(opts):
    started = time.time()
    os.makedirs(opts.out, exist_ok=True)
    results = draw_batch(opts.seed, opts.count, opts.runs, opts.jobs, opts.first)
    status = collections.Counter()
    total = collections.Counter()
    for index, scenario, st, detail, _secs in results:
        status[st] += 1
        if st == 'stable':
            oracle.write_scenario(os.path.join(opts.out, scenario['name'] + '.json'), scenario)
            total.update(features(scenario))
        else:
            print('%-8s %s/%d: %s' % (st.upper(), opts.seed, index, detail))
    print_coverage(total, status['stable'])
    print('seed %s: drew %d scenarios (%d..%d), %d stable over %d runs, %d unstable (dropped), %d errors; '
          '%.0f s' % (opts.seed, opts.count, opts.first, opts.first + opts.count - 1, status['stable'],
                      opts.runs, status['unstable'], status['error'], time.time() - started))
    return 1 if status['error'] else 0


if __name__ == '__main__':
    sys.exit(main())
