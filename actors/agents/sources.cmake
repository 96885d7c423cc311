# Sources of the agent registry's domain (paths relative to actors/).
set(GATEHOUSE_AGENTS_SOURCES
  agents/rules.cpp
  agents/usage_board.cpp
  agents/agent_registry.cpp)
