/*
 * validate: the Kubernetes name, label and quantity rules
 * (apimachinery pkg/util/validation, pkg/api/resource), checked before any
 * request so that a bad operation fails with a message naming the field.
 * All functions are pure and thread-safe; strings are borrowed.
 */
#ifndef PIPEOPS_K8S_VALIDATE_H
#define PIPEOPS_K8S_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>

/* [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 (namespaces, containers). */
bool k8s_is_dns1123_label(const char *s);
/* Dot-separated DNS-1123 labels, at most 253 (most object names). */
bool k8s_is_dns1123_subdomain(const char *s);
/* [a-z]([-a-z0-9]*[a-z0-9])?, at most 63 (Service names). */
bool k8s_is_dns1035_label(const char *s);
/* Label and annotation keys: [prefix/]name; prefix a DNS-1123 subdomain,
 * name ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9], at most 63. */
bool k8s_is_qualified_name(const char *s);
/* Label values: empty, or like a qualified name part, at most 63. */
bool k8s_is_label_value(const char *s);
/* Environment variable names (1.32): [-._a-zA-Z][-._a-zA-Z0-9]*. */
bool k8s_is_env_var_name(const char *s);
/* Port names (IANA_SVC_NAME): at most 15 of [-a-z0-9], at least one
 * letter, no leading, trailing or double '-'. */
bool k8s_is_port_name(const char *s);
/* Quantity syntax: [+-]number then "", n u m k M G T P E, Ki Mi Gi Ti Pi Ei
 * or an exponent e<int>/E<int>. */
bool k8s_is_quantity(const char *s);
/* Resource names in requests/limits: cpu, memory, ephemeral-storage,
 * hugepages-<quantity>, or a name with a domain prefix (nvidia.com/gpu). */
bool k8s_is_resource_name(const char *s);

/* Why @s is not a DNS-1123 label, for messages (static string). */
const char *k8s_dns1123_label_problem(const char *s);

#endif
