from repro.common.cli import run_main
from repro.common.data.cli import main

run_main(main)
