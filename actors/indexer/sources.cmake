# Sources of the indexer coordination's domain (paths relative to actors/).
set(GATEHOUSE_INDEXER_SOURCES
  indexer/rules.cpp
  indexer/indexer_coordination.cpp)
