"""etastream's benchmarks, one module per bench, each run as ``python -m bench.<name>``.

The benches import each other as ``bench.<module>`` and the product's packages; nothing from
``tests/`` (the load generators both use live in ``bench.loads`` and ``bench.monitor_scenario``).
Results go to ``bench/results/*.json``, which ``docs/gen_bench_table.py`` renders into README.
"""
