"""poso_sim.kkt"""
