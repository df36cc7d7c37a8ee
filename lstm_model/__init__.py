"""The forecasting core: windowing, scaling, Keras models, training, metrics, baselines.

No Prefect and no file layout here: this is a library a notebook can call. TensorFlow is
imported lazily by the modules that build or train models.
"""
