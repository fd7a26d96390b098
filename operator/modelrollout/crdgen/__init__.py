"""The CRD generator (`make crd`): a development tool, never imported by the operator at run time.

crds/modelrollout.dev_modelrollouts.yaml and its copy in the chart are built from the schema source in
hack/crd/, the field tables of docs/modelrollout.md and Kubernetes' core/v1 types (see generate.py).
"""
