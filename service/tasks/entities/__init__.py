"""Token classification (named entities): POST /classify/tokens."""
