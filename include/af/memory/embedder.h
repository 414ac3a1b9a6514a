#pragma once
// Embedders turn texts into unit-length vectors for the knowledge base's
// vector index. Two kinds:
//   - the built-in local embedder (default): no network, no model weights.
//     It hashes words (lower-cased, a few English stopwords dropped, each as
//     written and as a crudely stemmed form), identifier parts (snake_case,
//     camelCase, digits), word bigrams and character 3/4-grams of each text
//     into a fixed number of dimensions with signed feature hashing, weights
//     them sublinearly (1 + log tf) and normalises. It captures shared
//     vocabulary, word forms and identifier fragments ("parse_config" ~
//     "config parser", "retry" ~ "retries"); it does not know synonyms or
//     meaning ("car" is not near "automobile"), and it knows nothing about
//     which words are rare in the corpus (no IDF: full-text search does that).
//     A text without any word (empty, punctuation, only stopwords) gets one
//     fixed unit vector, the same for all such texts. Deterministic: the same
//     text always gives the same vector, in any process and on any platform.
//   - an OpenAI-compatible `/v1/embeddings` client (embeddings.base_url,
//     embeddings.model): Ollama, OpenAI, vLLM, ... for real semantic models.
//
// Thread safety: Embed may be called from several threads at once.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "af/core/status.h"

namespace af {

class HttpTransport;

struct EmbedderOptions {
  // "" = the local embedder. Otherwise the server's base URL, with or
  // without the trailing /v1 (e.g. http://127.0.0.1:11434/v1).
  std::string base_url;
  std::string model;                         // required with base_url (e.g. "nomic-embed-text")
  std::string api_key;                       // sent as a Bearer token when not empty; never logged
  int dimensions = 256;                      // local embedder only; 16..4096
  int batch_size = 64;                       // texts per HTTP request
  std::chrono::milliseconds timeout{60000};  // per HTTP request; default 60 s
  // Transport seam for tests; default: libcurl.
  std::shared_ptr<HttpTransport> transport;
};

class Embedder {
 public:
  virtual ~Embedder() = default;

  // InvalidArgument for bad options (dimensions out of range, base_url
  // without model), naming the setting. Does not contact the server.
  static Result<std::unique_ptr<Embedder>> Create(const EmbedderOptions& options);

  // Names the method and its parameters, e.g. "local-hash-v1/256" or
  // "openai-compatible:http://127.0.0.1:11434/v1#nomic-embed-text". An index
  // records the id of the embedder that built it and refuses vectors from
  // another.
  virtual std::string Id() const = 0;

  // One unit-length vector per text, in order. All vectors of one embedder
  // have the same size. Errors (HTTP embedder): kUnavailable when the server
  // cannot be reached, kFailedPrecondition on 401/404 (wrong key or model,
  // named with a hint), kInternal when the reply is malformed or its vectors
  // disagree in size; the message names the URL, never the key.
  virtual Result<std::vector<std::vector<float>>> Embed(const std::vector<std::string>& texts) = 0;
};

}  // namespace af
