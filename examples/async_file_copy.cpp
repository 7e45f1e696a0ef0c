// async_file_copy: Asio's own example (example/cpp11/files/async_file_copy.cpp
// in Asio 1.26 / Boost 1.81) with `asio::stream_file` replaced by
// `fsys::stream_file`; nothing else changed. It copies a file with
// async_read_some on one stream file and async_write on another, chained by
// callbacks.
//
// Usage: fsys-async-file-copy <from> <to>
#include <fsys/stream_file.hpp>

#include <boost/asio.hpp>

#include <iostream>

namespace asio = boost::asio;
using boost::system::error_code;
using fsys::stream_file;

class file_copier {
 public:
  file_copier(asio::io_context& io_context, const char* from, const char* to)
      : from_file_(io_context, from, stream_file::read_only),
        to_file_(io_context, to, stream_file::write_only | stream_file::create | stream_file::truncate) {}

  void start() { do_read(); }

 private:
  void do_read() {
    from_file_.async_read_some(asio::buffer(data_), [this](error_code error, std::size_t n) {
      if (!error) {
        do_write(n);
      } else if (error != asio::error::eof) {
        std::cerr << "Error copying file: " << error.message() << "\n";
      }
    });
  }

  void do_write(std::size_t n) {
    asio::async_write(to_file_, asio::buffer(data_, n), [this](error_code error, std::size_t /*n*/) {
      if (!error) {
        do_read();
      } else {
        std::cerr << "Error copying file: " << error.message() << "\n";
      }
    });
  }

  stream_file from_file_;
  stream_file to_file_;
  char data_[4096];
};

int main(int argc, char* argv[]) {
  try {
    if (argc != 3) {
      std::cerr << "Usage: fsys-async-file-copy <from> <to>\n";
      return 1;
    }

    asio::io_context io_context;

    file_copier copier(io_context, argv[1], argv[2]);
    copier.start();

    io_context.run();
  } catch (std::exception& e) {
    std::cerr << "Exception: " << e.what() << "\n";
    return 1;
  }

  return 0;
}
