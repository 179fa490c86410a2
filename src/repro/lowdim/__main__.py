from repro.common.cli import run_main
from repro.lowdim.cli import main

run_main(main)
