"""keyturn's benchmark suite: every performance figure of the project, with its baseline."""
