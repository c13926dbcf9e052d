"""Training: the LightningModule, freeze policies, callbacks and the Trainer facetransfer builds.

The submodules are imported where they are used, so importing this package loads no Lightning.
"""
