# gs:// support. fs_test: the file-system layer on local paths, and the error
# for gs:// paths in a program without the GCS backend (built without libcurl).
# gcs_unit_test: encodings and checksums. gcs_interop_test: against
# fake-gcs-server on loopback (tools/setup-venv installs it) with
# google-cloud-storage as the peer; skips (77) without the venv, fails under CI=true.
cumulus_add_test(fs_test ${CMAKE_CURRENT_LIST_DIR}/fs_test.cpp LABELS cpu)
if(TARGET cumulus::gcs)
  cumulus_add_test(gcs_unit_test ${CMAKE_CURRENT_LIST_DIR}/gcs_unit_test.cpp LABELS cpu)
  target_link_libraries(gcs_unit_test PRIVATE cumulus::gcs)
  cumulus_add_test(gcs_interop_test ${CMAKE_CURRENT_LIST_DIR}/gcs_interop_test.cpp LABELS "cpu;interop" TIMEOUT 300)
  target_link_libraries(gcs_interop_test PRIVATE cumulus::gcs)
  if(CUMULUS_BUILD_TOOLS)
    # The end-to-end case runs the cumulus-gcs program (tools/gcs.cmake, configured after tests/).
    target_compile_definitions(gcs_interop_test PRIVATE CUMULUS_GCS_TOOL="$<TARGET_FILE:cumulus_gcs>")
    add_dependencies(gcs_interop_test cumulus_gcs)
  endif()
endif()
