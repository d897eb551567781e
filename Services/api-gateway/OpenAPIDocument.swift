// Generated from openapi/titanium.yaml by scripts/openapi.py: do not edit. After changing the YAML, run
// `python3 scripts/openapi.py`; tests/deploy/check_consistency.py fails while this file is stale.

/// The public API's OpenAPI 3.1 document, in the binary (the images carry nothing else), served at
/// `GET /api/openapi.json` (``OpenAPIDocument/register(on:)``).
enum OpenAPIDocument {
    /// openapi/titanium.yaml as JSON (openapi/titanium.json holds the same).
    static let json = #"""
        {
          "openapi": "3.1.0",
          "info": {
            "title": "Titanium public API",
            "version": "1.0.0",
            "summary": "Users, tokens and blog posts behind Titanium's load balancer and api-gateway.",
            "description": "Every route is reached through the load balancer (port 7100) or an api-gateway (port 7200);\nthe gateway forwards `/api/auth/*` to auth-service, `/api/users/*` to user-service and\n`/api/posts*` to blog-service, and answers anything else itself. `/internal/*` routes are\nnot public: the gateway answers them 404. The load balancer also serves a WebSocket\nheartbeat at `/api/ws-heartbeat` (not described here: OpenAPI has no WebSocket), and the\ngateway forwards `/blog/` to blog-service's sample page (HTML, not an API).\n\n**Errors** have one shape everywhere:\n`{\"error\":{\"code\":\"...\",\"message\":\"...\",\"request_id\":\"...\",\"fields\":{...}}}`. `code` follows\nthe status (400 `bad_request` or `malformed_json`, 401 `unauthorized`, 403 `forbidden`,\n404 `not_found`, 405 `method_not_allowed`, 408 `request_timeout`, 409 `conflict`,\n413 `payload_too_large`, 415 `unsupported_media_type`, 422 `validation_failed`,\n429 `rate_limited`, 502 `bad_gateway`, 503 `unavailable`, 504 `gateway_timeout`);\n`fields` (422 and 409 only) names each invalid field with its problem; `request_id` is the\nanswer's `X-Request-ID`.\n\n**Request bodies** are JSON: `Content-Type: application/json` (else 415), at most\n`HTTP_MAX_BODY_BYTES` (1 MiB by default, else 413; a login body at most 16 KiB, which the\ngateway reads for the username its rate limit counts), of the documented shape (a wrong\ntype or no JSON object: 400 `malformed_json`). Unknown fields are ignored, and a field\nthat is `null` is taken as absent. A field that breaks a rule is 422 with `fields`.\n\n**Tokens**: `POST /api/auth/login` returns an ES256 JWT (`JWT_TTL_SECONDS`, 900 s by\ndefault), sent as `Authorization: Bearer ...`. A password change retires every token\nissued before it.\n\n**Rate limits** (the gateway, a sliding window in Redis, fail-open): login per client\naddress (`RATE_LIMIT_LOGIN_IP`, 20/60 s) and per username (`RATE_LIMIT_LOGIN`, 5/60 s),\nregistration per client address (`RATE_LIMIT_REGISTER`, 3/60 s), post writes per\nsigned-in user (`RATE_LIMIT_POST_WRITES`, 1200/60 s). Over a limit: 429 with\n`Retry-After`; every limited answer carries `RateLimit-Limit/Remaining/Reset`.\n\n**Proxies**: a service that refuses or resets is 502, none healthy is 503, one that does\nnot answer in time (2 s for the response head) is 504; these carry `Proxy-Status`\n(RFC 9209). Every answer carries `X-Request-ID` and `traceparent`. Any known path called\nwith a method it lacks is 405 with `Allow` (not listed per route).\n",
            "license": {
              "name": "MIT",
              "identifier": "MIT"
            }
          },
          "servers": [
            {
              "url": "/",
              "description": "the load balancer (http://127.0.0.1:7100) or an api-gateway (http://127.0.0.1:7200)"
            }
          ],
          "tags": [
            {
              "name": "auth",
              "description": "tokens (auth-service)"
            },
            {
              "name": "users",
              "description": "accounts (user-service)"
            },
            {
              "name": "posts",
              "description": "blog posts (blog-service)"
            },
            {
              "name": "meta",
              "description": "this document (api-gateway)"
            }
          ],
          "paths": {
            "/api/openapi.json": {
              "get": {
                "operationId": "getOpenAPIDocument",
                "tags": [
                  "meta"
                ],
                "summary": "This document, as JSON",
                "description": "Served by the api-gateway from its binary (generated from openapi/titanium.yaml), with an\n`ETag`; `If-None-Match` with that tag is answered 304.\n",
                "security": [],
                "responses": {
                  "200": {
                    "description": "the OpenAPI 3.1 document",
                    "headers": {
                      "ETag": {
                        "$ref": "#/components/headers/ETag"
                      },
                      "Cache-Control": {
                        "$ref": "#/components/headers/Cache-Control"
                      },
                      "X-Request-ID": {
                        "$ref": "#/components/headers/X-Request-ID"
                      },
                      "traceparent": {
                        "$ref": "#/components/headers/traceparent"
                      }
                    },
                    "content": {
                      "application/json": {
                        "schema": {
                          "type": "object",
                          "required": [
                            "openapi",
                            "info",
                            "paths"
                          ],
                          "properties": {
                            "openapi": {
                              "type": "string",
                              "pattern": "^3\\.1\\."
                            },
                            "info": {
                              "type": "object"
                            },
                            "paths": {
                              "type": "object"
                            }
                          }
                        }
                      }
                    }
                  },
                  "304": {
                    "description": "the client's copy (`If-None-Match`) is current",
                    "headers": {
                      "ETag": {
                        "$ref": "#/components/headers/ETag"
                      },
                      "Cache-Control": {
                        "$ref": "#/components/headers/Cache-Control"
                      }
                    }
                  },
                  "400": {
                    "$ref": "#/components/responses/BadRequest"
                  },
                  "502": {
                    "$ref": "#/components/responses/BadGateway"
                  },
                  "503": {
                    "$ref": "#/components/responses/Unavailable"
                  },
                  "504": {
                    "$ref": "#/components/responses/GatewayTimeout"
                  }
                }
              }
            },
            "/api/auth/login": {
              "post": {
                "operationId": "login",
                "tags": [
                  "auth"
                ],
                "summary": "Exchange a username and password for an access token",
                "description": "The credentials are checked by user-service (bcrypt); an unknown user and a wrong\npassword get the same 401. Rate limited per client address and per username.\n",
                "security": [],
                "requestBody": {
                  "required": true,
                  "content": {
                    "application/json": {
                      "schema": {
                        "$ref": "#/components/schemas/LoginRequest"
                      },
                      "example": {
                        "username": "alice",
                        "password": "correct horse battery"
                      }
                    }
                  }
                },
                "responses": {
                  "200": {
                    "description": "a signed access token",
                    "headers": {
                      "RateLimit-Limit": {
                        "$ref": "#/components/headers/RateLimit-Limit"
                      },
                      "RateLimit-Remaining": {
                        "$ref": "#/components/headers/RateLimit-Remaining"
                      },
                      "RateLimit-Reset": {
                        "$ref": "#/components/headers/RateLimit-Reset"
                      },
                      "X-Request-ID": {
                        "$ref": "#/components/headers/X-Request-ID"
                      },
                      "traceparent": {
                        "$ref": "#/components/headers/traceparent"
                      }
                    },
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Token"
                        }
                      }
                    }
                  },
                  "400": {
                    "$ref": "#/components/responses/BadRequest"
                  },
                  "401": {
                    "$ref": "#/components/responses/BadCredentials"
                  },
                  "413": {
                    "$ref": "#/components/responses/PayloadTooLarge"
                  },
                  "415": {
                    "$ref": "#/components/responses/UnsupportedMediaType"
                  },
                  "422": {
                    "$ref": "#/components/responses/ValidationFailed"
                  },
                  "429": {
                    "$ref": "#/components/responses/RateLimited"
                  },
                  "502": {
                    "$ref": "#/components/responses/BadGateway"
                  },
                  "503": {
                    "$ref": "#/components/responses/Unavailable"
                  },
                  "504": {
                    "$ref": "#/components/responses/GatewayTimeout"
                  }
                }
              }
            },
            "/api/auth/verify": {
              "get": {
                "operationId": "verifyToken",
                "tags": [
                  "auth"
                ],
                "summary": "Check the bearer token",
                "description": "200 when the token is valid and not retired by a password change since it was issued\n(user-service is asked each time: 502 or 504 when it cannot say).\n",
                "security": [
                  {
                    "bearerAuth": []
                  }
                ],
                "responses": {
                  "200": {
                    "description": "the token's user and expiry",
                    "headers": {
                      "X-Request-ID": {
                        "$ref": "#/components/headers/X-Request-ID"
                      },
                      "traceparent": {
                        "$ref": "#/components/headers/traceparent"
                      }
                    },
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Verification"
                        }
                      }
                    }
                  },
                  "400": {
                    "$ref": "#/components/responses/BadRequest"
                  },
                  "401": {
                    "$ref": "#/components/responses/Unauthorized"
                  },
                  "502": {
                    "$ref": "#/components/responses/BadGateway"
                  },
                  "503": {
                    "$ref": "#/components/responses/Unavailable"
                  },
                  "504": {
                    "$ref": "#/components/responses/GatewayTimeout"
                  }
                }
              }
            },
            "/api/users": {
              "post": {
                "operationId": "registerUser",
                "tags": [
                  "users"
                ],
                "summary": "Register a user",
                "description": "The password is stored as a bcrypt hash. Usernames and emails are unique regardless of\ncase (409 names the field taken). Rate limited per client address.\n",
                "security": [],
                "requestBody": {
                  "required": true,
                  "content": {
                    "application/json": {
                      "schema": {
                        "$ref": "#/components/schemas/RegisterRequest"
                      },
                      "example": {
                        "username": "alice",
                        "email": "alice@example.com",
                        "password": "correct horse battery"
                      }
                    }
                  }
                },
                "responses": {
                  "201": {
                    "description": "the new user, its email included",
                    "headers": {
                      "RateLimit-Limit": {
                        "$ref": "#/components/headers/RateLimit-Limit"
                      },
                      "RateLimit-Remaining": {
                        "$ref": "#/components/headers/RateLimit-Remaining"
                      },
                      "RateLimit-Reset": {
                        "$ref": "#/components/headers/RateLimit-Reset"
                      },
                      "X-Request-ID": {
                        "$ref": "#/components/headers/X-Request-ID"
                      },
                      "traceparent": {
                        "$ref": "#/components/headers/traceparent"
                      }
                    },
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/OwnUser"
                        }
                      }
                    },
                    "links": {
                      "GetUserById": {
                        "operationId": "getUser",
                        "parameters": {
                          "id": "$response.body#/id"
                        }
                      }
                    }
                  },
                  "400": {
                    "$ref": "#/components/responses/BadRequest"
                  },
                  "409": {
                    "$ref": "#/components/responses/Conflict"
                  },
                  "413": {
                    "$ref": "#/components/responses/PayloadTooLarge"
                  },
                  "415": {
                    "$ref": "#/components/responses/UnsupportedMediaType"
                  },
                  "422": {
                    "$ref": "#/components/responses/ValidationFailed"
                  },
                  "429": {
                    "$ref": "#/components/responses/RateLimited"
                  },
                  "502": {
                    "$ref": "#/components/responses/BadGateway"
                  },
                  "503": {
                    "$ref": "#/components/responses/Unavailable"
                  },
                  "504": {
                    "$ref": "#/components/responses/GatewayTimeout"
                  }
                }
              }
            },
            "/api/users/me": {
              "get": {
                "operationId": "getMe",
                "tags": [
                  "users"
                ],
                "summary": "The bearer token's user, its email included",
                "security": [
                  {
                    "bearerAuth": []
                  }
                ],
                "responses": {
                  "200": {
                    "description": "the token's user",
                    "headers": {
                      "X-Cache": {
                        "$ref": "#/components/headers/X-Cache"
                      },
                      "X-Request-ID": {
                        "$ref": "#/components/headers/X-Request-ID"
                      },
                      "traceparent": {
                        "$ref": "#/components/headers/traceparent"
                      }
                    },
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/OwnUser"
                        }
                      }
                    }
                  },
                  "400": {
                    "$ref": "#/components/responses/BadRequest"
                  },
                  "401": {
                    "$ref": "#/components/responses/Unauthorized"
                  },
                  "502": {
                    "$ref": "#/components/responses/BadGateway"
                  },
                  "503": {
                    "$ref": "#/components/responses/Unavailable"
                  },
                  "504": {
                    "$ref": "#/components/responses/GatewayTimeout"
                  }
                }
              },
              "patch": {
                "operationId": "updateMe",
                "tags": [
                  "users"
                ],
                "summary": "Change the token owner's email and/or password",
                "description": "A new password needs `current_password` (403 when it is wrong) and retires every token\nissued before it, this request's included: log in again. A change racing another\npassword change is 401, not applied.\n",
                "security": [
                  {
                    "bearerAuth": []
                  }
                ],
                "requestBody": {
                  "required": true,
                  "content": {
                    "application/json": {
                      "schema": {
                        "$ref": "#/components/schemas/UpdateMeRequest"
                      },
                      "example": {
                        "email": "alice@example.org"
                      }
                    }
                  }
                },
                "responses": {
                  "200": {
                    "description": "the user as changed",
                    "headers": {
                      "X-Request-ID": {
                        "$ref": "#/components/headers/X-Request-ID"
                      },
                      "traceparent": {
                        "$ref": "#/components/headers/traceparent"
                      }
                    },
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/OwnUser"
                        }
                      }
                    }
                  },
                  "400": {
                    "$ref": "#/components/responses/BadRequest"
                  },
                  "401": {
                    "$ref": "#/components/responses/Unauthorized"
                  },
                  "403": {
                    "$ref": "#/components/responses/Forbidden"
                  },
                  "409": {
                    "$ref": "#/components/responses/Conflict"
                  },
                  "413": {
                    "$ref": "#/components/responses/PayloadTooLarge"
                  },
                  "415": {
                    "$ref": "#/components/responses/UnsupportedMediaType"
                  },
                  "422": {
                    "$ref": "#/components/responses/ValidationFailed"
                  },
                  "502": {
                    "$ref": "#/components/responses/BadGateway"
                  },
                  "503": {
                    "$ref": "#/components/responses/Unavailable"
                  },
                  "504": {
                    "$ref": "#/components/responses/GatewayTimeout"
                  }
                }
              }
            },
            "/api/users/{id}": {
              "get": {
                "operationId": "getUser",
                "tags": [
                  "users"
                ],
                "summary": "A user by id",
                "description": "Anyone may read a user; its `email` only its owner, with a current token of that user.\nAny other caller (no token, another user's, an invalid one) gets the same answer without\n`email`, not an error. The answer varies with `Authorization`.\n",
                "security": [
                  {},
                  {
                    "bearerAuth": []
                  }
                ],
                "parameters": [
                  {
                    "$ref": "#/components/parameters/UserID"
                  }
                ],
                "responses": {
                  "200": {
                    "description": "the user",
                    "headers": {
                      "Vary": {
                        "$ref": "#/components/headers/Vary"
                      },
                      "X-Cache": {
                        "$ref": "#/components/headers/X-Cache"
                      },
                      "X-Request-ID": {
                        "$ref": "#/components/headers/X-Request-ID"
                      },
                      "traceparent": {
                        "$ref": "#/components/headers/traceparent"
                      }
                    },
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/User"
                        }
                      }
                    }
                  },
                  "400": {
                    "$ref": "#/components/responses/BadRequest"
                  },
                  "404": {
                    "$ref": "#/components/responses/NotFound"
                  },
                  "502": {
                    "$ref": "#/components/responses/BadGateway"
                  },
                  "503": {
                    "$ref": "#/components/responses/Unavailable"
                  },
                  "504": {
                    "$ref": "#/components/responses/GatewayTimeout"
                  }
                }
              }
            },
            "/api/posts": {
              "get": {
                "operationId": "listPosts",
                "tags": [
                  "posts"
                ],
                "summary": "Posts, newest first, a page at a time",
                "security": [],
                "parameters": [
                  {
                    "name": "limit",
                    "in": "query",
                    "description": "posts per page; above 100 is answered as 100",
                    "schema": {
                      "type": "integer",
                      "format": "int64",
                      "minimum": 1,
                      "maximum": 9223372036854775807,
                      "default": 20
                    }
                  },
                  {
                    "name": "offset",
                    "in": "query",
                    "description": "posts to skip",
                    "schema": {
                      "type": "integer",
                      "format": "int64",
                      "minimum": 0,
                      "maximum": 9223372036854775807,
                      "default": 0
                    }
                  }
                ],
                "responses": {
                  "200": {
                    "description": "one page",
                    "headers": {
                      "X-Request-ID": {
                        "$ref": "#/components/headers/X-Request-ID"
                      },
                      "traceparent": {
                        "$ref": "#/components/headers/traceparent"
                      }
                    },
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/PostPage"
                        }
                      }
                    }
                  },
                  "400": {
                    "$ref": "#/components/responses/BadRequest"
                  },
                  "422": {
                    "$ref": "#/components/responses/ValidationFailed"
                  },
                  "502": {
                    "$ref": "#/components/responses/BadGateway"
                  },
                  "503": {
                    "$ref": "#/components/responses/Unavailable"
                  },
                  "504": {
                    "$ref": "#/components/responses/GatewayTimeout"
                  }
                }
              },
              "post": {
                "operationId": "createPost",
                "tags": [
                  "posts"
                ],
                "summary": "Publish a post as the token's user",
                "description": "Needs a current token (not retired by a password change: user-service is asked, 502 or\n504 when it cannot say). Rate limited per signed-in user.\n",
                "security": [
                  {
                    "bearerAuth": []
                  }
                ],
                "requestBody": {
                  "required": true,
                  "content": {
                    "application/json": {
                      "schema": {
                        "$ref": "#/components/schemas/NewPost"
                      },
                      "example": {
                        "title": "Hello",
                        "body": "First post"
                      }
                    }
                  }
                },
                "responses": {
                  "201": {
                    "description": "the new post",
                    "headers": {
                      "Location": {
                        "$ref": "#/components/headers/Location"
                      },
                      "RateLimit-Limit": {
                        "$ref": "#/components/headers/RateLimit-Limit"
                      },
                      "RateLimit-Remaining": {
                        "$ref": "#/components/headers/RateLimit-Remaining"
                      },
                      "RateLimit-Reset": {
                        "$ref": "#/components/headers/RateLimit-Reset"
                      },
                      "X-Request-ID": {
                        "$ref": "#/components/headers/X-Request-ID"
                      },
                      "traceparent": {
                        "$ref": "#/components/headers/traceparent"
                      }
                    },
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Post"
                        }
                      }
                    },
                    "links": {
                      "GetPostById": {
                        "operationId": "getPost",
                        "parameters": {
                          "id": "$response.body#/id"
                        }
                      },
                      "UpdatePostById": {
                        "operationId": "updatePost",
                        "parameters": {
                          "id": "$response.body#/id"
                        }
                      },
                      "DeletePostById": {
                        "operationId": "deletePost",
                        "parameters": {
                          "id": "$response.body#/id"
                        }
                      }
                    }
                  },
                  "400": {
                    "$ref": "#/components/responses/BadRequest"
                  },
                  "401": {
                    "$ref": "#/components/responses/Unauthorized"
                  },
                  "413": {
                    "$ref": "#/components/responses/PayloadTooLarge"
                  },
                  "415": {
                    "$ref": "#/components/responses/UnsupportedMediaType"
                  },
                  "422": {
                    "$ref": "#/components/responses/ValidationFailed"
                  },
                  "429": {
                    "$ref": "#/components/responses/RateLimited"
                  },
                  "502": {
                    "$ref": "#/components/responses/BadGateway"
                  },
                  "503": {
                    "$ref": "#/components/responses/Unavailable"
                  },
                  "504": {
                    "$ref": "#/components/responses/GatewayTimeout"
                  }
                }
              }
            },
            "/api/posts/{id}": {
              "get": {
                "operationId": "getPost",
                "tags": [
                  "posts"
                ],
                "summary": "A post by id",
                "security": [],
                "parameters": [
                  {
                    "$ref": "#/components/parameters/PostID"
                  }
                ],
                "responses": {
                  "200": {
                    "description": "the post",
                    "headers": {
                      "X-Request-ID": {
                        "$ref": "#/components/headers/X-Request-ID"
                      },
                      "traceparent": {
                        "$ref": "#/components/headers/traceparent"
                      }
                    },
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Post"
                        }
                      }
                    }
                  },
                  "400": {
                    "$ref": "#/components/responses/BadRequest"
                  },
                  "404": {
                    "$ref": "#/components/responses/NotFound"
                  },
                  "502": {
                    "$ref": "#/components/responses/BadGateway"
                  },
                  "503": {
                    "$ref": "#/components/responses/Unavailable"
                  },
                  "504": {
                    "$ref": "#/components/responses/GatewayTimeout"
                  }
                }
              },
              "patch": {
                "operationId": "updatePost",
                "tags": [
                  "posts"
                ],
                "summary": "Change a post's title and/or body (its author only)",
                "description": "Needs a current token of the post's author (another user's: 403). Rate limited per\nsigned-in user.\n",
                "security": [
                  {
                    "bearerAuth": []
                  }
                ],
                "parameters": [
                  {
                    "$ref": "#/components/parameters/PostID"
                  }
                ],
                "requestBody": {
                  "required": true,
                  "content": {
                    "application/json": {
                      "schema": {
                        "$ref": "#/components/schemas/PostChange"
                      },
                      "example": {
                        "title": "Hello again"
                      }
                    }
                  }
                },
                "responses": {
                  "200": {
                    "description": "the post as changed",
                    "headers": {
                      "RateLimit-Limit": {
                        "$ref": "#/components/headers/RateLimit-Limit"
                      },
                      "RateLimit-Remaining": {
                        "$ref": "#/components/headers/RateLimit-Remaining"
                      },
                      "RateLimit-Reset": {
                        "$ref": "#/components/headers/RateLimit-Reset"
                      },
                      "X-Request-ID": {
                        "$ref": "#/components/headers/X-Request-ID"
                      },
                      "traceparent": {
                        "$ref": "#/components/headers/traceparent"
                      }
                    },
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Post"
                        }
                      }
                    }
                  },
                  "400": {
                    "$ref": "#/components/responses/BadRequest"
                  },
                  "401": {
                    "$ref": "#/components/responses/Unauthorized"
                  },
                  "403": {
                    "$ref": "#/components/responses/Forbidden"
                  },
                  "404": {
                    "$ref": "#/components/responses/NotFound"
                  },
                  "413": {
                    "$ref": "#/components/responses/PayloadTooLarge"
                  },
                  "415": {
                    "$ref": "#/components/responses/UnsupportedMediaType"
                  },
                  "422": {
                    "$ref": "#/components/responses/ValidationFailed"
                  },
                  "429": {
                    "$ref": "#/components/responses/RateLimited"
                  },
                  "502": {
                    "$ref": "#/components/responses/BadGateway"
                  },
                  "503": {
                    "$ref": "#/components/responses/Unavailable"
                  },
                  "504": {
                    "$ref": "#/components/responses/GatewayTimeout"
                  }
                }
              },
              "delete": {
                "operationId": "deletePost",
                "tags": [
                  "posts"
                ],
                "summary": "Delete a post (its author only)",
                "description": "Needs a current token of the post's author (another user's: 403). Rate limited per\nsigned-in user.\n",
                "security": [
                  {
                    "bearerAuth": []
                  }
                ],
                "parameters": [
                  {
                    "$ref": "#/components/parameters/PostID"
                  }
                ],
                "responses": {
                  "204": {
                    "description": "deleted",
                    "headers": {
                      "RateLimit-Limit": {
                        "$ref": "#/components/headers/RateLimit-Limit"
                      },
                      "RateLimit-Remaining": {
                        "$ref": "#/components/headers/RateLimit-Remaining"
                      },
                      "RateLimit-Reset": {
                        "$ref": "#/components/headers/RateLimit-Reset"
                      },
                      "X-Request-ID": {
                        "$ref": "#/components/headers/X-Request-ID"
                      },
                      "traceparent": {
                        "$ref": "#/components/headers/traceparent"
                      }
                    }
                  },
                  "400": {
                    "$ref": "#/components/responses/BadRequest"
                  },
                  "401": {
                    "$ref": "#/components/responses/Unauthorized"
                  },
                  "403": {
                    "$ref": "#/components/responses/Forbidden"
                  },
                  "404": {
                    "$ref": "#/components/responses/NotFound"
                  },
                  "429": {
                    "$ref": "#/components/responses/RateLimited"
                  },
                  "502": {
                    "$ref": "#/components/responses/BadGateway"
                  },
                  "503": {
                    "$ref": "#/components/responses/Unavailable"
                  },
                  "504": {
                    "$ref": "#/components/responses/GatewayTimeout"
                  }
                }
              }
            }
          },
          "components": {
            "securitySchemes": {
              "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "An ES256 access token from `POST /api/auth/login` (issuer `titanium-auth`, audience\n`titanium`), valid for `JWT_TTL_SECONDS` and until its user's password changes.\n"
              }
            },
            "parameters": {
              "UserID": {
                "name": "id",
                "in": "path",
                "required": true,
                "description": "the user's id; anything but a whole number \u2265 1 is 404",
                "schema": {
                  "type": "integer",
                  "format": "int64",
                  "minimum": 1
                },
                "example": 1
              },
              "PostID": {
                "name": "id",
                "in": "path",
                "required": true,
                "description": "the post's id; anything but a whole number \u2265 1 is 404",
                "schema": {
                  "type": "integer",
                  "format": "int64",
                  "minimum": 1
                },
                "example": 1
              }
            },
            "headers": {
              "X-Request-ID": {
                "description": "the request's id (the client's when it sent a well-formed one, else made up); in logs and traces",
                "schema": {
                  "type": "string",
                  "minLength": 1,
                  "maxLength": 128
                }
              },
              "traceparent": {
                "description": "W3C trace context of the server span that answered",
                "schema": {
                  "type": "string"
                }
              },
              "ETag": {
                "description": "the document's version",
                "schema": {
                  "type": "string"
                }
              },
              "Cache-Control": {
                "description": "how long the answer may be reused",
                "schema": {
                  "type": "string"
                }
              },
              "Vary": {
                "description": "the request headers the answer depends on",
                "schema": {
                  "type": "string"
                }
              },
              "X-Cache": {
                "description": "how user-service served the read: from its Redis cache (`hit`), from SQLite (`miss`), or from SQLite with Redis unavailable (`error`)",
                "schema": {
                  "type": "string",
                  "enum": [
                    "hit",
                    "miss",
                    "error"
                  ]
                }
              },
              "Location": {
                "description": "the new resource's path",
                "schema": {
                  "type": "string"
                }
              },
              "Retry-After": {
                "description": "seconds until the limit admits another request",
                "required": true,
                "schema": {
                  "type": "integer",
                  "minimum": 1
                }
              },
              "RateLimit-Limit": {
                "description": "requests the tightest matching limit admits per window",
                "schema": {
                  "type": "integer",
                  "minimum": 1
                }
              },
              "RateLimit-Remaining": {
                "description": "requests left in the current window",
                "schema": {
                  "type": "integer",
                  "minimum": 0
                }
              },
              "RateLimit-Reset": {
                "description": "seconds until a slot frees",
                "schema": {
                  "type": "integer",
                  "minimum": 1
                }
              },
              "WWW-Authenticate": {
                "description": "the bearer challenge (`Bearer`, or `Bearer error=\"invalid_token\"`)",
                "schema": {
                  "type": "string"
                }
              },
              "Proxy-Status": {
                "description": "RFC 9209, on an answer a proxy made about its next hop",
                "schema": {
                  "type": "string"
                }
              },
              "Allow": {
                "description": "the methods the path serves",
                "schema": {
                  "type": "string"
                }
              }
            },
            "schemas": {
              "Error": {
                "description": "the one error shape of the whole system",
                "type": "object",
                "required": [
                  "error"
                ],
                "properties": {
                  "error": {
                    "type": "object",
                    "required": [
                      "code",
                      "message"
                    ],
                    "properties": {
                      "code": {
                        "type": "string",
                        "description": "the status as a word (see the API description)",
                        "enum": [
                          "bad_request",
                          "malformed_json",
                          "unauthorized",
                          "forbidden",
                          "not_found",
                          "method_not_allowed",
                          "request_timeout",
                          "conflict",
                          "payload_too_large",
                          "unsupported_media_type",
                          "validation_failed",
                          "rate_limited",
                          "bad_gateway",
                          "unavailable",
                          "gateway_timeout",
                          "internal_error"
                        ]
                      },
                      "message": {
                        "type": "string",
                        "minLength": 1,
                        "description": "for people; may change"
                      },
                      "request_id": {
                        "type": "string",
                        "minLength": 1,
                        "description": "the answer's `X-Request-ID`"
                      },
                      "fields": {
                        "type": "object",
                        "description": "one problem per invalid field (422), or the field already taken (409)",
                        "additionalProperties": {
                          "type": "string"
                        }
                      }
                    }
                  }
                }
              },
              "Username": {
                "type": "string",
                "description": "3 to 32 of letters, digits, `_`, `.` and `-` (ASCII); unique regardless of case",
                "pattern": "^[A-Za-z0-9_.-]{3,32}$",
                "minLength": 3,
                "maxLength": 32
              },
              "Email": {
                "type": "string",
                "description": "something@something.something, no spaces or NUL, at most 254 characters; unique regardless of case",
                "pattern": "^[^@\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+@[^@\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+\\.[^@\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$",
                "minLength": 5,
                "maxLength": 254
              },
              "Password": {
                "type": "string",
                "description": "At least 8 characters and at most 72 bytes of UTF-8 (bcrypt reads no more), no NUL\ncharacter.\n",
                "pattern": "^[^\u0000]*$",
                "minLength": 8,
                "maxLength": 72
              },
              "Timestamp": {
                "type": "string",
                "format": "date-time",
                "description": "RFC 3339, UTC, milliseconds (`2026-01-31T12:00:00.000Z`)"
              },
              "LoginRequest": {
                "type": "object",
                "required": [
                  "username",
                  "password"
                ],
                "properties": {
                  "username": {
                    "type": "string",
                    "minLength": 1
                  },
                  "password": {
                    "type": "string",
                    "minLength": 1
                  }
                }
              },
              "Token": {
                "type": "object",
                "required": [
                  "access_token",
                  "token_type",
                  "expires_in"
                ],
                "properties": {
                  "access_token": {
                    "type": "string",
                    "minLength": 1,
                    "description": "the JWT"
                  },
                  "token_type": {
                    "const": "Bearer"
                  },
                  "expires_in": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "seconds the token is valid"
                  }
                }
              },
              "Verification": {
                "type": "object",
                "required": [
                  "user_id",
                  "username",
                  "expires_at"
                ],
                "properties": {
                  "user_id": {
                    "type": "integer",
                    "format": "int64",
                    "minimum": 1
                  },
                  "username": {
                    "type": "string"
                  },
                  "expires_at": {
                    "type": "string",
                    "format": "date-time",
                    "description": "ISO 8601, UTC, whole seconds"
                  }
                }
              },
              "RegisterRequest": {
                "type": "object",
                "required": [
                  "username",
                  "email",
                  "password"
                ],
                "properties": {
                  "username": {
                    "$ref": "#/components/schemas/Username"
                  },
                  "email": {
                    "$ref": "#/components/schemas/Email"
                  },
                  "password": {
                    "$ref": "#/components/schemas/Password"
                  }
                }
              },
              "UpdateMeRequest": {
                "type": "object",
                "description": "`email`, `password` or both; a new `password` needs `current_password`",
                "properties": {
                  "email": {
                    "$ref": "#/components/schemas/Email"
                  },
                  "password": {
                    "$ref": "#/components/schemas/Password"
                  },
                  "current_password": {
                    "type": "string",
                    "minLength": 1
                  }
                },
                "anyOf": [
                  {
                    "required": [
                      "email"
                    ]
                  },
                  {
                    "required": [
                      "password"
                    ]
                  }
                ],
                "dependentRequired": {
                  "password": [
                    "current_password"
                  ]
                }
              },
              "User": {
                "type": "object",
                "description": "a user as anyone sees it; `email` only for its owner",
                "required": [
                  "id",
                  "username",
                  "created_at"
                ],
                "properties": {
                  "id": {
                    "type": "integer",
                    "format": "int64",
                    "minimum": 1
                  },
                  "username": {
                    "type": "string",
                    "minLength": 1
                  },
                  "email": {
                    "type": "string",
                    "minLength": 1
                  },
                  "created_at": {
                    "$ref": "#/components/schemas/Timestamp"
                  }
                }
              },
              "OwnUser": {
                "description": "a user as its owner sees it",
                "allOf": [
                  {
                    "$ref": "#/components/schemas/User"
                  },
                  {
                    "required": [
                      "email"
                    ]
                  }
                ]
              },
              "PostTitle": {
                "type": "string",
                "description": "1 to 200 characters (user-perceived) and at most 800 bytes of UTF-8, not only whitespace, no NUL",
                "minLength": 1,
                "maxLength": 200,
                "pattern": "^[^\u0000]*[^\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
              },
              "PostBody": {
                "type": "string",
                "description": "1 to 20000 characters (user-perceived) and at most 80000 bytes of UTF-8, not only whitespace, no NUL",
                "minLength": 1,
                "maxLength": 20000,
                "pattern": "^[^\u0000]*[^\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
              },
              "NewPost": {
                "type": "object",
                "required": [
                  "title",
                  "body"
                ],
                "properties": {
                  "title": {
                    "$ref": "#/components/schemas/PostTitle"
                  },
                  "body": {
                    "$ref": "#/components/schemas/PostBody"
                  }
                }
              },
              "PostChange": {
                "type": "object",
                "description": "`title`, `body` or both",
                "properties": {
                  "title": {
                    "$ref": "#/components/schemas/PostTitle"
                  },
                  "body": {
                    "$ref": "#/components/schemas/PostBody"
                  }
                },
                "anyOf": [
                  {
                    "required": [
                      "title"
                    ]
                  },
                  {
                    "required": [
                      "body"
                    ]
                  }
                ]
              },
              "Post": {
                "type": "object",
                "required": [
                  "id",
                  "author_id",
                  "author",
                  "title",
                  "body",
                  "created_at",
                  "updated_at"
                ],
                "properties": {
                  "id": {
                    "type": "integer",
                    "format": "int64",
                    "minimum": 1
                  },
                  "author_id": {
                    "type": "integer",
                    "format": "int64",
                    "minimum": 1
                  },
                  "author": {
                    "type": "string",
                    "description": "the author's username when the post was written"
                  },
                  "title": {
                    "type": "string"
                  },
                  "body": {
                    "type": "string"
                  },
                  "created_at": {
                    "$ref": "#/components/schemas/Timestamp"
                  },
                  "updated_at": {
                    "$ref": "#/components/schemas/Timestamp"
                  }
                }
              },
              "PostPage": {
                "type": "object",
                "required": [
                  "posts",
                  "total",
                  "limit",
                  "offset"
                ],
                "properties": {
                  "posts": {
                    "type": "array",
                    "items": {
                      "$ref": "#/components/schemas/Post"
                    },
                    "maxItems": 100
                  },
                  "total": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "posts in all"
                  },
                  "limit": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 100,
                    "description": "the page size used (the request's",
                    "at most 100)": null
                  },
                  "offset": {
                    "type": "integer",
                    "format": "int64",
                    "minimum": 0
                  }
                }
              }
            },
            "responses": {
              "BadRequest": {
                "description": "`malformed_json`: the body is not JSON of the documented shape (a field of the wrong\ntype, not an object). `bad_request`: the request itself is malformed (a `.` or `..`\npath segment, ambiguous framing).\n",
                "headers": {
                  "X-Request-ID": {
                    "$ref": "#/components/headers/X-Request-ID"
                  }
                },
                "content": {
                  "application/json": {
                    "schema": {
                      "allOf": [
                        {
                          "$ref": "#/components/schemas/Error"
                        },
                        {
                          "properties": {
                            "error": {
                              "properties": {
                                "code": {
                                  "enum": [
                                    "bad_request",
                                    "malformed_json"
                                  ]
                                }
                              }
                            }
                          }
                        }
                      ]
                    }
                  }
                }
              },
              "Unauthorized": {
                "description": "no bearer token, an invalid or expired one, or one retired by a password change",
                "headers": {
                  "WWW-Authenticate": {
                    "$ref": "#/components/headers/WWW-Authenticate"
                  },
                  "X-Request-ID": {
                    "$ref": "#/components/headers/X-Request-ID"
                  }
                },
                "content": {
                  "application/json": {
                    "schema": {
                      "allOf": [
                        {
                          "$ref": "#/components/schemas/Error"
                        },
                        {
                          "properties": {
                            "error": {
                              "properties": {
                                "code": {
                                  "const": "unauthorized"
                                }
                              }
                            }
                          }
                        }
                      ]
                    }
                  }
                }
              },
              "BadCredentials": {
                "description": "invalid username or password (the same answer whether or not the user exists)",
                "headers": {
                  "X-Request-ID": {
                    "$ref": "#/components/headers/X-Request-ID"
                  }
                },
                "content": {
                  "application/json": {
                    "schema": {
                      "allOf": [
                        {
                          "$ref": "#/components/schemas/Error"
                        },
                        {
                          "properties": {
                            "error": {
                              "properties": {
                                "code": {
                                  "const": "unauthorized"
                                }
                              }
                            }
                          }
                        }
                      ]
                    }
                  }
                }
              },
              "Forbidden": {
                "description": "the token is fine, but it may not do this (not the author; a wrong current password)",
                "headers": {
                  "X-Request-ID": {
                    "$ref": "#/components/headers/X-Request-ID"
                  }
                },
                "content": {
                  "application/json": {
                    "schema": {
                      "allOf": [
                        {
                          "$ref": "#/components/schemas/Error"
                        },
                        {
                          "properties": {
                            "error": {
                              "properties": {
                                "code": {
                                  "const": "forbidden"
                                }
                              }
                            }
                          }
                        }
                      ]
                    }
                  }
                }
              },
              "NotFound": {
                "description": "no such resource (or an id that is not a whole number \u2265 1)",
                "headers": {
                  "X-Request-ID": {
                    "$ref": "#/components/headers/X-Request-ID"
                  }
                },
                "content": {
                  "application/json": {
                    "schema": {
                      "allOf": [
                        {
                          "$ref": "#/components/schemas/Error"
                        },
                        {
                          "properties": {
                            "error": {
                              "properties": {
                                "code": {
                                  "const": "not_found"
                                }
                              }
                            }
                          }
                        }
                      ]
                    }
                  }
                }
              },
              "Conflict": {
                "description": "the username or email is taken (`fields` names which)",
                "headers": {
                  "X-Request-ID": {
                    "$ref": "#/components/headers/X-Request-ID"
                  }
                },
                "content": {
                  "application/json": {
                    "schema": {
                      "allOf": [
                        {
                          "$ref": "#/components/schemas/Error"
                        },
                        {
                          "properties": {
                            "error": {
                              "required": [
                                "fields"
                              ],
                              "properties": {
                                "code": {
                                  "const": "conflict"
                                }
                              }
                            }
                          }
                        }
                      ]
                    }
                  }
                }
              },
              "PayloadTooLarge": {
                "description": "the body is larger than the limit (`HTTP_MAX_BODY_BYTES`, 1 MiB; 16 KiB for a login)",
                "headers": {
                  "X-Request-ID": {
                    "$ref": "#/components/headers/X-Request-ID"
                  }
                },
                "content": {
                  "application/json": {
                    "schema": {
                      "allOf": [
                        {
                          "$ref": "#/components/schemas/Error"
                        },
                        {
                          "properties": {
                            "error": {
                              "properties": {
                                "code": {
                                  "const": "payload_too_large"
                                }
                              }
                            }
                          }
                        }
                      ]
                    }
                  }
                }
              },
              "UnsupportedMediaType": {
                "description": "the body is not declared `application/json`",
                "headers": {
                  "X-Request-ID": {
                    "$ref": "#/components/headers/X-Request-ID"
                  }
                },
                "content": {
                  "application/json": {
                    "schema": {
                      "allOf": [
                        {
                          "$ref": "#/components/schemas/Error"
                        },
                        {
                          "properties": {
                            "error": {
                              "properties": {
                                "code": {
                                  "const": "unsupported_media_type"
                                }
                              }
                            }
                          }
                        }
                      ]
                    }
                  }
                }
              },
              "ValidationFailed": {
                "description": "some fields break a rule; `fields` has one message per field",
                "headers": {
                  "X-Request-ID": {
                    "$ref": "#/components/headers/X-Request-ID"
                  }
                },
                "content": {
                  "application/json": {
                    "schema": {
                      "allOf": [
                        {
                          "$ref": "#/components/schemas/Error"
                        },
                        {
                          "properties": {
                            "error": {
                              "required": [
                                "fields"
                              ],
                              "properties": {
                                "code": {
                                  "const": "validation_failed"
                                }
                              }
                            }
                          }
                        }
                      ]
                    }
                  }
                }
              },
              "RateLimited": {
                "description": "over a rate limit of the gateway",
                "headers": {
                  "Retry-After": {
                    "$ref": "#/components/headers/Retry-After"
                  },
                  "RateLimit-Limit": {
                    "$ref": "#/components/headers/RateLimit-Limit"
                  },
                  "RateLimit-Remaining": {
                    "$ref": "#/components/headers/RateLimit-Remaining"
                  },
                  "RateLimit-Reset": {
                    "$ref": "#/components/headers/RateLimit-Reset"
                  },
                  "X-Request-ID": {
                    "$ref": "#/components/headers/X-Request-ID"
                  }
                },
                "content": {
                  "application/json": {
                    "schema": {
                      "allOf": [
                        {
                          "$ref": "#/components/schemas/Error"
                        },
                        {
                          "properties": {
                            "error": {
                              "properties": {
                                "code": {
                                  "const": "rate_limited"
                                }
                              }
                            }
                          }
                        }
                      ]
                    }
                  }
                }
              },
              "BadGateway": {
                "description": "a service behind the proxy refused, reset or answered what it should not",
                "headers": {
                  "Proxy-Status": {
                    "$ref": "#/components/headers/Proxy-Status"
                  },
                  "X-Request-ID": {
                    "$ref": "#/components/headers/X-Request-ID"
                  }
                },
                "content": {
                  "application/json": {
                    "schema": {
                      "allOf": [
                        {
                          "$ref": "#/components/schemas/Error"
                        },
                        {
                          "properties": {
                            "error": {
                              "properties": {
                                "code": {
                                  "const": "bad_gateway"
                                }
                              }
                            }
                          }
                        }
                      ]
                    }
                  }
                }
              },
              "Unavailable": {
                "description": "no healthy instance of the service behind the proxy",
                "headers": {
                  "Proxy-Status": {
                    "$ref": "#/components/headers/Proxy-Status"
                  },
                  "X-Request-ID": {
                    "$ref": "#/components/headers/X-Request-ID"
                  }
                },
                "content": {
                  "application/json": {
                    "schema": {
                      "allOf": [
                        {
                          "$ref": "#/components/schemas/Error"
                        },
                        {
                          "properties": {
                            "error": {
                              "properties": {
                                "code": {
                                  "const": "unavailable"
                                }
                              }
                            }
                          }
                        }
                      ]
                    }
                  }
                }
              },
              "GatewayTimeout": {
                "description": "the service behind the proxy did not answer in time",
                "headers": {
                  "Proxy-Status": {
                    "$ref": "#/components/headers/Proxy-Status"
                  },
                  "X-Request-ID": {
                    "$ref": "#/components/headers/X-Request-ID"
                  }
                },
                "content": {
                  "application/json": {
                    "schema": {
                      "allOf": [
                        {
                          "$ref": "#/components/schemas/Error"
                        },
                        {
                          "properties": {
                            "error": {
                              "properties": {
                                "code": {
                                  "const": "gateway_timeout"
                                }
                              }
                            }
                          }
                        }
                      ]
                    }
                  }
                }
              }
            }
          }
        }
        """#

    /// A strong validator of ``json``: the first 128 bits of its SHA-256.
    static let etag = #""sha256-c8a4487685e8d305ceab62746444bf4d""#
}
