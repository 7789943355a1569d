"""``python -m bridges.mediapipe INPUT... --out DIR`` (see :func:`bridges.mediapipe.cli.main`)."""

from bridges.mediapipe.cli import main

if __name__ == "__main__":
    main()
