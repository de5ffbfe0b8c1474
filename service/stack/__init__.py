"""`./noxw -s stack` (`python -m service.stack`): the whole system on this machine for local development, not
shipped in the Bento (bentofile.yaml excludes it)."""
