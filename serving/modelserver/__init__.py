"""Model server for scikit-learn models: Open Inference Protocol (V2) and KServe V1 REST.

Importing the package is cheap: the operator imports `modelserver.contract` and
`modelserver.contract_parse` without pulling in scikit-learn, numpy or aiohttp.
"""

__version__ = "0.1.0"
