"""Loading `.keras` files of the sublayer layout, whose cells kept their weights in sublayers.

The cells of mnm_keras 0.1.0, and of the code after it until the weight table
(`mnm_keras.weights`), held a Keras ``LSTMCell`` (``controller``) and ``Dense`` layers
(``interface``, ``rate``, ``output_projection``, a list ``feedback``) whose weights alone
were used, and
Keras 3 saved each at its sublayer's path (``.../cell/interface/vars/0``; a list's items by
class name, ``.../cell/feedback/dense_1/vars/0``), with only phi_0 under the cell's own
``.../cell/vars``. The cells now own every weight (`mnm_keras.weights`), saved under
``.../cell/vars`` in table order.

Keras 3 loads a layer's own variables first, then walks its attributes and loads each
saveable one from the path of the attribute's name. So when a cell finds that layout in
its own variables (`load_own_variables`), it sets, for that walk only, an attribute per
sublayer path holding a `_Reader`: a layer without variables of its own that copies
what the file holds at that path into the cell's variables, and then removes itself.
"""

from __future__ import annotations

import functools

import keras


class _Reader(keras.layers.Layer):
    """Copies the variables saved at one of the sublayer paths into ``targets``
    (``{position in the file: the cell's variable}``); its children (attributes) read
    the paths below it. ``cell``: the cell it loads; ``attribute``: the cell's attribute
    that holds it (None for a reader below another), removed on loading."""

    def __init__(self, path, targets, children, cell, attribute):
        super().__init__(name=path.replace("/", "_"), trainable=False)
        # A function, not a tuple: Keras' loader walks an attribute that is a tuple, and
        # tracks the variables of one (they are the cell's, not this reader's).
        object.__setattr__(
            self, "_copy", functools.partial(_copy, path, dict(targets), cell, attribute)
        )
        for name, child in children.items():
            setattr(self, name, child)

    def save_own_variables(self, store):
        raise RuntimeError("a reader of the sublayer layout is not saved")

    def load_own_variables(self, store):
        self._copy(store)


def _copy(path, targets, cell, attribute, store):
    """`_Reader.load_own_variables`: ``store`` (what the file holds at ``path``) into
    ``targets``; removes the reader from ``cell``'s ``attribute`` first."""
    if attribute is not None and attribute in vars(cell):
        object.__delattr__(cell, attribute)  # only for this load
    if len(store) != len(targets):
        raise ValueError(
            f"{cell_name(cell)}: a file of the sublayer layout should hold {len(targets)} "
            f"variables at the sublayer path {path!r}; it holds {len(store)}."
        )
    for position, variable in targets.items():
        value = store[str(position)]
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"{cell_name(cell)}: the variable {position} at {path!r} of a file of "
                f"the sublayer layout has shape {tuple(value.shape)}; the cell's "
                f"{variable.name} has shape {tuple(variable.shape)}."
            )
        variable.assign(value)


def cell_name(cell):
    return f"{type(cell).__name__} {cell.name!r}"


def readers(cell, table, variables):
    """``{attribute: _Reader}`` for the weights of ``table`` (rows of `mnm_keras.weights`,
    with the cell's ``variables`` in the same order) that the sublayer layout kept in sublayers."""
    tree = {}  # path segment -> {"targets": {...}, "children": {...}}
    for row, variable in zip(table, variables, strict=True):
        path, position = row.legacy
        if not path:
            continue
        node = {"children": tree}
        for segment in path.split("/"):
            node = node["children"].setdefault(segment, {"targets": {}, "children": {}})
        node["targets"][position] = variable

    def build(nodes, prefix):
        built = {}
        for segment, node in nodes.items():
            path = f"{prefix}{segment}"
            children = build(node["children"], f"{path}/")
            # A top-level reader is an attribute of the cell, removed when it loads.
            attribute = None if prefix else segment
            built[segment] = _Reader(path, node["targets"], children, cell, attribute)
        return built

    return build(tree, "")


def load_own_variables(cell, store, table, variables):
    """A cell's ``load_own_variables``: its variables, in ``table`` order, from ``store``;
    or, from a file of the sublayer layout (phi_0 alone under the cell), phi_0 and the readers of the
    rest (`readers`), which Keras' loader visits next."""
    own = [(row, v) for row, v in zip(table, variables, strict=True) if not row.legacy[0]]
    if len(store) == len(variables):
        pairs = [(str(i), v) for i, v in enumerate(variables)]
    elif len(store) == len(own) and len(own) < len(variables):
        pairs = [(str(row.legacy[1]), v) for row, v in own]
        for attribute, reader in readers(cell, table, variables).items():
            object.__setattr__(cell, attribute, reader)
    else:
        raise ValueError(
            f"{cell_name(cell)} expects {len(variables)} saved variables (or the {len(own)} "
            f"that a file of the sublayer layout saved under the cell); the file holds {len(store)}."
        )
    for key, variable in pairs:
        value = store[key]
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"{cell_name(cell)}: saved variable {key} has shape {tuple(value.shape)}; "
                f"the cell's {variable.name} has shape {tuple(variable.shape)}."
            )
        variable.assign(value)
