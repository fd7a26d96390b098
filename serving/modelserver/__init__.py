"""Model server for scikit-learn models: Open Inference Protocol (V2) and KServe V1 REST."""
