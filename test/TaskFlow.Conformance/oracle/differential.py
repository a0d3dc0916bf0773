#!/usr/bin/python3
"""Differential check: a fresh batch of random scenarios, judged by the real TaskFlow, through our runner.

Usage (normally through scripts/differential.sh, which installs python3-taskflow and builds the runner):
    differential.py [--seed S] [--count 50] [--modes plain,sqlite,distributed-memory] [--out DIR]
                    [--runs 20] [--jobs J] [--dir DIR] [--no-minimise] [--budget 60] [--total-budget 180]
                    [--coverage]

1. draws scenarios S/0 .. S/count-1 (scenariogen.py; --seed defaults to a random one, always printed),
   keeps those whose expectation is stable over --runs oracle runs, and writes them to DIR/batch
   (--dir runs an existing folder of scenarios instead);
2. runs our conformance runner over the batch once per mode;
3. minimises every scenario that fails (minimise.py, in the first mode it fails in, at most --budget
   seconds each and --total-budget in all) and prints, per failure, the seed and index, the modes,
   the first difference, the minimised scenario, its first difference and whether its shape is a
   known difference (SPEC N18, N19) -- a label, never a filter: every failure counts;
4. writes DIR/summary.env (DIFF_PASSED, DIFF_FAILED: one per scenario and mode) for scripts/test.sh
   and ends with one summary line. Exit status 1 when anything failed (a generator or oracle error too).
"""

import argparse
import collections
import json
import os
import random
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import minimise  # noqa: E402
import oracle  # noqa: E402
import scenariogen  # noqa: E402


FLAKY_REPEAT = 20


def run_mode(dll, mode, folder):
    """{scenario name: first difference or None} of our runner over FOLDER in MODE."""
    proc = subprocess.run(['dotnet', dll] + minimise.MODES[mode] + [folder], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    results = {}
    for line in proc.stdout.splitlines():
        m = re.match(r'^(PASS|FAIL) (\S+?)(?:: (.*))?$', line)
        if m:
            results[m.group(2)] = None if m.group(1) == 'PASS' else (m.group(3) or '')
    if not results:
        raise SystemExit('error: the runner printed no result in mode %s:\n%s' % (mode, proc.stdout[-4000:]))
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seed')
    parser.add_argument('--count', type=int, default=50)
    parser.add_argument('--modes', default='plain,sqlite,distributed-memory')
    parser.add_argument('--out', default='differential-out')
    parser.add_argument('--runs', type=int, default=scenariogen.DEFAULT_RUNS)
    parser.add_argument('--jobs', type=int, default=os.cpu_count() or 1)
    parser.add_argument('--dir', help='run the scenarios of this folder instead of drawing a batch')
    parser.add_argument('--no-minimise', action='store_true')
    parser.add_argument('--budget', type=float, default=60, help='seconds per minimisation')
    parser.add_argument('--total-budget', type=float, default=180, help='seconds for all minimisations')
    parser.add_argument('--coverage', action='store_true', help='print the feature coverage of the batch')
    parser.add_argument('--dll', default=os.environ.get('TASKFLOW_CONFORMANCE_DLL') or minimise.DEFAULT_DLL)
    opts = parser.parse_args(argv)
    modes = [m for m in opts.modes.split(',') if m]
    for m in modes:
        if m not in minimise.MODES:
            parser.error('unknown mode %r (%s)' % (m, ', '.join(sorted(minimise.MODES))))
    if not os.path.exists(opts.dll):
        raise SystemExit('error: %s not found; build it: dotnet build -c Release test/TaskFlow.Conformance'
                         % opts.dll)
    started = time.time()
    os.makedirs(opts.out, exist_ok=True)
    errors = 0
    unstable = 0
    index_of = {}
    if opts.dir:
        folder = opts.dir
        seed = None
        files = oracle.collect([folder])
        print('differential: %d scenarios of %s' % (len(files), folder), flush=True)
    else:
        seed = opts.seed or str(random.SystemRandom().randrange(1, 10 ** 6))
        folder = os.path.join(opts.out, 'batch')
        os.makedirs(folder, exist_ok=True)
        for name in os.listdir(folder):
            if name.endswith('.json'):
                os.remove(os.path.join(folder, name))
        print('differential: seed %s, %d scenarios, oracle stability over %d runs '
              '(reproduce: scripts/differential.sh --seed %s --count %d)'
              % (seed, opts.count, opts.runs, seed, opts.count), flush=True)
        results = scenariogen.draw_batch(seed, opts.count, opts.runs, opts.jobs)
        coverage = collections.Counter()
        for index, scenario, status, detail, _secs in results:
            if status == 'stable':
                oracle.write_scenario(os.path.join(folder, scenario['name'] + '.json'), scenario)
                index_of[scenario['name']] = index
                coverage.update(scenariogen.features(scenario))
            elif status == 'unstable':
                unstable += 1
                print('  unstable (dropped): %s/%d: %s' % (seed, index, detail[:300]))
            else:
                errors += 1
                print('  ERROR (generator or oracle): %s/%d: %s' % (seed, index, detail))
        kept = len(results) - unstable - errors
        print('drew %d: %d stable, %d unstable (dropped), %d errors; %.0f s'
              % (len(results), kept, unstable, errors, time.time() - started), flush=True)
        if opts.coverage:
            scenariogen.print_coverage(coverage, kept)
    per_mode = collections.OrderedDict()
    for mode in modes:
        t = time.time()
        per_mode[mode] = run_mode(opts.dll, mode, folder)
        res = per_mode[mode]
        print('%s: %d passed, %d failed (%.0f s)' % (mode, sum(1 for d in res.values() if d is None),
                                                     sum(1 for d in res.values() if d is not None),
                                                     time.time() - t), flush=True)
    failing = collections.OrderedDict()
    for mode, res in per_mode.items():
        for name in sorted(res):
            if res[name] is not None:
                failing.setdefault(name, []).append(mode)
    labels = collections.Counter()
    minimise_started = time.time()
    for name, fmodes in failing.items():
        where = ('seed %s, index %d' % (seed, index_of[name])) if name in index_of else folder
        print('\nFAIL %s (%s) in %s' % (name, where, ', '.join(fmodes)))
        print('  first difference: %s' % per_mode[fmodes[0]][name])
        path = os.path.join(folder, name + '.json')
        with open(path) as fh:
            scenario = json.load(fh)
        left = opts.total_budget - (time.time() - minimise_started)
        if opts.no_minimise or left <= 0:
            shapes = minimise.known_shapes(scenario)
            labels[', '.join(shapes) or 'new'] += 1
            print('  not minimised (%s); shape: %s' % ('--no-minimise' if opts.no_minimise else
                                                       'total budget used up', ', '.join(shapes) or 'new'))
            continue
        runner = minimise.Runner(fmodes[0], opts.dll)
        flaky = False
        try:
            m = minimise.Minimiser(runner, runs=opts.runs, budget=min(opts.budget, left))
            t = time.time()
            result = m.minimise(scenario, scenario['expect'])
            if result is None:
                # It failed in the batch but passes alone: a difference that depends on timing.
                flaky = True
                m = minimise.Minimiser(runner, runs=opts.runs, budget=min(opts.budget, left),
                                       repeat=FLAKY_REPEAT)
                result = m.minimise(scenario, scenario['expect'])
        finally:
            runner.close()
        if result is None:
            print('  passed %d more runs alone in %s: flaky, not minimised' % (FLAKY_REPEAT, fmodes[0]))
            labels['flaky'] += 1
            continue
        small, expect, diff = result
        small = dict(small, name=name + '-min',
                     description='minimised from %s (%s, mode %s)' % (name, where, fmodes[0]))
        small['oracle'] = '%s, stable over %d runs' % (oracle.ORACLE_ID, opts.runs)
        small = oracle.ordered_scenario(small, expect)
        os.makedirs(os.path.join(opts.out, 'minimised'), exist_ok=True)
        oracle.write_scenario(os.path.join(opts.out, 'minimised', name + '-min.json'), small)
        shapes = minimise.known_shapes(small)
        labels[('flaky ' if flaky else '') + (', '.join(shapes) or 'new')] += 1
        if flaky:
            print('  FLAKY: passes alone, fails in some of %d runs (minimised with --repeat %d)'
                  % (FLAKY_REPEAT, FLAKY_REPEAT))
        print('  minimised in %.0f s (%d candidates): %s -> %s; shape: %s'
              % (time.time() - t, m.tried, minimise.size_text(scenario), minimise.size_text(small),
                 ', '.join(shapes) + ' (known)' if shapes else 'neither N18 nor N19: NEW'))
        print('  minimised first difference: %s' % diff)
        for line in oracle.pretty(dict((k, v) for k, v in small.items() if k != 'expect')).splitlines():
            print('    ' + line)
    passed = sum(1 for res in per_mode.values() for d in res.values() if d is None)
    failed = sum(1 for res in per_mode.values() for d in res.values() if d is not None) + errors
    with open(os.path.join(opts.out, 'summary.env'), 'w') as fh:
        fh.write('DIFF_PASSED=%d\nDIFF_FAILED=%d\n' % (passed, failed))
    scenarios = len(next(iter(per_mode.values()))) if per_mode else 0
    print('\ndifferential%s: %d scenarios x %d modes (%s): %d passed, %d failed; %d failing scenarios '
          '(%s); %d unstable dropped, %d errors; %.0f s'
          % (' seed ' + seed if seed else '', scenarios, len(modes), ','.join(modes), passed, failed,
             len(failing), ', '.join('%s: %d' % kv for kv in sorted(labels.items())) or 'none',
             unstable, errors, time.time() - started))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
