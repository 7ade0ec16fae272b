# The bridge benchmark's helpers (python/bench/bench_bridge.py drives them), each its own
# program, so they are taken out of the shmstore_bench library that bench/CMakeLists.txt
# globs together from every .c here (include this file between that glob and the
# add_library):
# - shmstore_zmq_floor (zmq_floor.c): the raw ZeroMQ PUSH/PULL floor, with the bridge's
#   socket options; links only libzmq.
# - shmstore_bridge_probe (bridge_probe.c): the store side of each case (writers in the
#   source store, readers of the far one) through the public C API, so the figures are the
#   bridge's and not Python's.
# Built only when the library has the bridge (SHMSTORE_HAVE_ZMQ: libzmq found).
list(REMOVE_ITEM SHMSTORE_BENCH_SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/zmq_floor.c
     ${CMAKE_CURRENT_SOURCE_DIR}/bridge_probe.c)
if(SHMSTORE_HAVE_ZMQ)
  add_executable(shmstore_zmq_floor ${CMAKE_CURRENT_SOURCE_DIR}/zmq_floor.c)
  target_include_directories(shmstore_zmq_floor SYSTEM PRIVATE ${ZMQ_INCLUDE_DIRS})
  target_link_libraries(shmstore_zmq_floor PRIVATE ${ZMQ_LINK_LIBRARIES})
  target_compile_options(shmstore_zmq_floor PRIVATE ${SHMSTORE_WARNINGS})
  target_compile_definitions(shmstore_zmq_floor PRIVATE _POSIX_C_SOURCE=200809L)

  add_executable(shmstore_bridge_probe ${CMAKE_CURRENT_SOURCE_DIR}/bridge_probe.c)
  target_link_libraries(shmstore_bridge_probe PRIVATE shmstore_static Threads::Threads)
  target_compile_options(shmstore_bridge_probe PRIVATE ${SHMSTORE_WARNINGS})
  target_compile_definitions(shmstore_bridge_probe PRIVATE _POSIX_C_SOURCE=200809L)
endif()
