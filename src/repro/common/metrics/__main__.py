from repro.common.cli import run_main
from repro.common.metrics.cli import main

run_main(main)
