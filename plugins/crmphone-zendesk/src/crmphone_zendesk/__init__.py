"""crmphone-zendesk: Zendesk for crmphone, on zenpy.

So far the distribution holds the local Zendesk emulator, :mod:`crmphone_zendesk.emulator`;
the adapter joins it (entry point ``zendesk`` in group ``crmphone.adapters``).
"""
