"""Classification of texts and text pairs: POST /classify."""
