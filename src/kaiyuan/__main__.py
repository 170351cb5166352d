"""``python -m kaiyuan``."""

from kaiyuan.cli import main

main()
