"""vlsm_lib: transfer learning of vision-language segmentation models to medical images.

The library behind the study notebooks: MedShapes synthetic data, the prompt generator, the
image-text-mask dataset, models, training, evaluation, runs and reports.
"""

__version__ = "0.1.0"
