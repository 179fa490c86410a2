from repro.common.cli import run_main
from repro.strainer.cli import main

if __name__ == "__main__":
    run_main(main)
