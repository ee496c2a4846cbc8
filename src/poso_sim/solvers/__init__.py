"""poso_sim.solvers"""
