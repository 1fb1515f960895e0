"""poolkit: build the Tudui conv/pool/activation modules, export, verify and benchmark them.

Nothing heavy is imported here: `poolkit --help` must not pay for torch.
"""

__version__ = "0.1.0"
