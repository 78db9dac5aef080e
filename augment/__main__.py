"""The `augment` command, as installed and as `python -m augment`.

Importing this module is the command's start: its first line holds the signals
(augment/interrupts.py), before the CLI and its libraries are imported, so a Ctrl-C at any
moment from here on ends as an interrupt (the message, 130), never a traceback.
"""

from augment import interrupts

interrupts.hold()


def main() -> None:
    def cli() -> None:
        from augment.cli import main as click_main

        click_main()

    interrupts.run(cli)


if __name__ == "__main__":
    main()
