"""Built-in data the package generates: scenes, stick figures, motion and spoken scenes."""
