from repro.common.cli import run_main
from repro.selfcheck.cli import main

run_main(main)
