"""``python -m crmphone`` runs the ``crmphone`` command."""

from crmphone.cli import main

main()
