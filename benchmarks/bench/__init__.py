"""``doorguard bench``: one module per job.

    command.py         the command: arguments, ``Bench`` running every section, ``main``
    source.py          the frames it plays (facemask853 val, else the demo)
    end_to_end.py      1. the real runner, instrumented; per-stage and per-frame figures
    seed.py            2. the seed-style loop (also counted by ``make bench-arm``)
    peers.py           3. peer detectors on the same frames
    float_int8.py      4. float vs int8 sizes and invoke latency (invoke.py: runs under another Python)
    subprocess_run.py  5. ``doorguard run`` as a child: peak RSS, start-up
    macs.py            6. MACs from model graphs and the Pi projection they scale
    stats.py           spreads over repeats, percentiles
    plots.py, report.py  the PNG plots and bench.md

Nothing in edge/ or convert/ imports this package (tests/test_layers.py).
"""
