"""The two networks behind one interface (``networks``: the tutorial's RNN and a GRU), and the RNN's backward
pass written by hand (``bptt``) with its check against autograd (``gradcheck``)."""
