"""``python -m kaiyuan.cli`` (how torchrun relaunches a training command)."""

from kaiyuan.cli import main

main()
