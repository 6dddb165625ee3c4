"""The names data: reading and normalising the lists (``names``) and the fixed splits every model uses (``splits``)."""
