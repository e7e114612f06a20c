"""Built-in recipes; each module registers one with :func:`latentbridge.train.recipe.register`."""
