// The generated <fsys/version.hpp> against the project version Meson passes
// in (FSYS_TEST_PROJECT_VERSION, from project(version:)): the string must be
// the project's version, and the numbers must be the string's.
#include <boost/test/unit_test.hpp>

#include <fsys/fsys.hpp>  // version.hpp must come in through the umbrella header

#include <string>

#ifndef FSYS_TEST_PROJECT_VERSION
#error "tests/meson.build passes FSYS_TEST_PROJECT_VERSION"
#endif

static_assert(FSYS_VERSION_MAJOR >= 0 && FSYS_VERSION_MINOR >= 0 && FSYS_VERSION_PATCH >= 0,
              "the version macros are integer constants usable in #if");

BOOST_AUTO_TEST_CASE(string_is_the_project_version) {
  BOOST_TEST(std::string(FSYS_VERSION_STRING) == std::string(FSYS_TEST_PROJECT_VERSION));
}

BOOST_AUTO_TEST_CASE(numbers_make_the_string) {
  const std::string joined = std::to_string(FSYS_VERSION_MAJOR) + "." +
                             std::to_string(FSYS_VERSION_MINOR) + "." +
                             std::to_string(FSYS_VERSION_PATCH);
  const std::string full = FSYS_VERSION_STRING;
  // The string may carry a pre-release suffix ("1.2.3-rc1") after the numbers.
  BOOST_TEST((full == joined || full.starts_with(joined + "-")), full << " vs " << joined);
}

#if FSYS_VERSION_MAJOR * 10000 + FSYS_VERSION_MINOR * 100 + FSYS_VERSION_PATCH < 100
#error "the version macros must compare in #if (fsys is at least 0.1.0)"
#endif
