"""``python -m kubesaga``: the same CLI as the ``kubesaga`` console script."""

from kubesaga.cli.main import main

main()
