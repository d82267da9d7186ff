"""Development tools: the rendering of the bundle configs from recipes/."""
