from repro.autopalette.cli import main
from repro.common.cli import run_main

if __name__ == "__main__":
    run_main(main)
