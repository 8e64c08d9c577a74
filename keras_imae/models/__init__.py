"""``RobustModel`` and the architectures it is built with.

:class:`RobustModel` trains on ``(x, {"label": noisy, "clean_label": clean})`` with any
compiled loss and reports ``clean_fit``, ``noisy_fit`` (memorisation) and ``noisy_correct``
(:mod:`._robust`); :func:`build_model` builds one of :data:`ARCHITECTURES`
(:mod:`._architectures`). TensorFlow is imported only by its TensorFlow code paths, so the
models run (and import) on the JAX backend too.
"""

from keras_imae.models._architectures import (ARCHITECTURES, ShortcutA, build_model,
                                              check_input_dropout, cifar_resnet, cnn, mlp)
from keras_imae.models._robust import FIT_METRICS, RobustModel

__all__ = ["ARCHITECTURES", "FIT_METRICS", "RobustModel", "ShortcutA", "build_model",
           "check_input_dropout", "cifar_resnet", "cnn", "mlp"]
