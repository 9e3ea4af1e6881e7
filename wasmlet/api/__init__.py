"""The WasmApp API as Python: typed spec model and constants, checked against crds/."""
