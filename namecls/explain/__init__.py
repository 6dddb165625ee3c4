"""How the network reached its answer: the hidden-state map (``projection``), reference names and what each unit
does (``units``), the cell at work (``cell``), how the answer's gradient reaches back through the characters
(``gradient``), what one-letter edits change (``edits``), and the story in words (``story``)."""
