"""diffusers helpers: each lives in its own module and is re-exported here."""
