"""TF-Agents extensions of mnm_keras: the grid maze, MNM actor-critic networks, an A2C agent.

Not implemented yet: this package is the place of issue 6 (a tf-keras MNM cell that calls
`mnm_keras.memory`, the maze environment and the A2C agent). It holds no code so far, and
importing it has no side effect.
"""
