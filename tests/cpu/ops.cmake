# CPU op families: elementwise, reductions, dropout, softmax cross-entropy,
# optimizer updates, batch gathering.
foreach(op elementwise reduce dropout softmax_xent optimizer data)
  cumulus_add_test(cpu_${op}_test ${CMAKE_CURRENT_LIST_DIR}/${op}_test.cpp LABELS cpu)
endforeach()
