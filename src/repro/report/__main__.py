from repro.common.cli import run_main
from repro.report.cli import main

run_main(main)
