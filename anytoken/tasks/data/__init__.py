"""Task data: DataModules, generated data (``synthetic/``) and readers of public formats (``formats/``)."""
