// gs:// paths for the trainer programs: the GCS backend registers itself
// when this program was built with it (linked to the CMake target
// cumulus::gcs, which defines CUMULUS_WITH_GCS=1; libcurl and OpenSSL).
// Without it a gs:// path fails with a message saying so.
#pragma once

#if CUMULUS_WITH_GCS
#include <cumulus/io/gcs.hpp>
#endif
