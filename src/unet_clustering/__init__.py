"""Image segmentation with a Keras 3 U-Net, then clustering of what it learned.

Import the step you need by name, as the notebooks do::

    from unet_clustering import config, data, unet

Modules are not imported here, so that ``import unet_clustering`` stays cheap and does not
load TensorFlow.
"""

import os

# TensorFlow's C++ start-up lines (CUDA probes, oneDNN notes) are noise for learners; errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
