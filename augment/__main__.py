"""The `augment` command, as installed and as `python -m augment`: signals are handled from
its first line (augment/interrupts.py), before the CLI and its libraries are imported."""

from augment.interrupts import install, run


def main() -> None:
    install()

    def cli() -> None:
        from augment.cli import main as click_main

        click_main()

    run(cli)


if __name__ == "__main__":
    main()
